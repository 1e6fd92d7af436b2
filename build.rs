//! Link flags for the `sipseal` binary only.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SIPSEAL_PACK_RELOCS");
    // SIPSEAL_PACK_RELOCS=1: relative relocations packed (DT_RELR). The
    // dynamic loader then applies the binary's ~13,000 relocations from a
    // bitmap of 3 KB instead of a 300 KB table at every start, about
    // 0.3 ms of CPU a start here (issue 26: a shell script starts sipseal
    // once per message); still position-independent, its address
    // randomised. Opt-in: such a binary starts only on glibc 2.36 or
    // later, and where it will run is not known here (a binary built in
    // a container may be copied to an older system).
    if std::env::var("SIPSEAL_PACK_RELOCS").is_ok_and(|v| v == "1") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
