//! Work that may block (a file written and fsync'd, a Redis round trip,
//! an RSA private-key operation) run where it cannot hold up other
//! messages: inside a live server's multi-threaded runtime, the runtime
//! first hands the thread's other tasks to another thread
//! (`tokio::task::block_in_place`); anywhere else (the file commands, a
//! test) it simply runs.

/// Run `f`, which may block, without holding up the tasks of a live
/// server's runtime.
pub fn offload<T>(f: impl FnOnce() -> T) -> T {
    #[cfg(feature = "live")]
    {
        use tokio::runtime::{Handle, RuntimeFlavor};
        if Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread) {
            return tokio::task::block_in_place(f);
        }
    }
    f()
}
