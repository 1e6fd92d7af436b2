//! File output that is never half-written: a temporary file in the target's
//! directory, flushed to disk, then renamed over the target. A target that
//! exists and is not a regular file (`-o /dev/null`, a FIFO, `/dev/stdout`)
//! is written in place: renaming over it would replace the device. A
//! symbolic link is followed (the file it names is replaced, the link
//! stays); a directory, or a link to one, is an error.
//!
//! Modes: a new file is 0600 when `private` (plaintext, keys, reports,
//! session stores), else 0644, and the umask applies to both; an existing
//! file's mode is never widened (the new mode is the old one at most).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Write `bytes` to `path` atomically; `private` makes a new file mode
/// 0600 (see the module notes).
pub fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    write_atomic_via(path, bytes, private, None)
}

/// [`write_atomic`] with the temporary file in `tmp_dir` (same file
/// system as `path`): a store keeps them apart, so that the next writer
/// finds and removes what a killed one left.
pub fn write_atomic_via(
    path: &Path,
    bytes: &[u8],
    private: bool,
    tmp_dir: Option<&Path>,
) -> std::io::Result<()> {
    write_atomic_synced(path, bytes, private, tmp_dir, true)
}

/// [`write_atomic_via`], with the fsync before the rename only when
/// `sync`: without it the file is still whole or absent for any other
/// process, and survives the writer being killed, but not the machine
/// losing power.
pub fn write_atomic_synced(
    path: &Path,
    bytes: &[u8],
    private: bool,
    tmp_dir: Option<&Path>,
    sync: bool,
) -> std::io::Result<()> {
    let target = follow(path)?;
    let existing = std::fs::metadata(&target).ok();
    if let Some(meta) = &existing {
        if meta.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::IsADirectory,
                "it is a directory (or a link to one): give a file name",
            ));
        }
        if !meta.is_file() {
            let mut f = std::fs::OpenOptions::new().write(true).open(&target)?;
            return f.write_all(bytes).and_then(|()| f.flush());
        }
    }
    let dir = match (tmp_dir, target.parent()) {
        (Some(t), _) => t,
        (None, Some(d)) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".sipseal-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Set at creation, so the umask applies.
        builder.permissions(std::fs::Permissions::from_mode(if private {
            0o600
        } else {
            0o644
        }));
    }
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    #[cfg(unix)]
    if let Some(meta) = &existing {
        use std::os::unix::fs::PermissionsExt;
        let created = tmp.as_file().metadata()?.permissions().mode() & 0o777;
        let narrowed = created & meta.permissions().mode() & 0o777;
        if narrowed != created {
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(narrowed))?;
        }
    }
    if sync {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(&target).map_err(|e| e.error)?;
    Ok(())
}

/// Replace a file of a store's own (mode 0600, in a directory it made):
/// [`write_atomic_synced`] without what a user-named output needs (a
/// symbolic link followed, a device written in place, an existing
/// file's mode kept): the temporary file in `tmp_dir`, then a rename.
pub fn replace_private(
    path: &Path,
    bytes: &[u8],
    tmp_dir: &Path,
    sync: bool,
) -> std::io::Result<()> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".sipseal-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let mut tmp = builder.tempfile_in(tmp_dir)?;
    tmp.write_all(bytes)?;
    if sync {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// `path`, or the file a symbolic link there names.
fn follow(path: &Path) -> std::io::Result<PathBuf> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => match std::fs::canonicalize(path) {
            Ok(p) => Ok(p),
            // A dangling link: create the file it names.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let link = std::fs::read_link(path)?;
                Ok(match path.parent() {
                    Some(d) if link.is_relative() => d.join(link),
                    _ => link,
                })
            }
            Err(e) => Err(e),
        },
        _ => Ok(path.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_file_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.txt");
        write_atomic(&p, b"first", false).unwrap();
        write_atomic(&p, b"second", true).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// S5: an existing file's mode is never widened; a private new file is 0600.
    #[cfg(unix)]
    #[test]
    fn modes_are_never_widened() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("plain.sdp");
        write_atomic(&p, b"secret", true).unwrap();
        assert_eq!(mode(&p), 0o600);
        write_atomic(&p, b"public now?", false).unwrap();
        assert_eq!(mode(&p), 0o600, "a 0600 file stays 0600");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&p, b"x", false).unwrap();
        assert_eq!(mode(&p), 0o640);
        write_atomic(&p, b"x", true).unwrap();
        assert_eq!(mode(&p), 0o600);
    }

    /// A link is followed; a link to a directory is an error, nothing written.
    #[cfg(unix)]
    #[test]
    fn symlinks_are_followed_and_directories_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.txt");
        std::fs::write(&real, b"old").unwrap();
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, b"new", false).unwrap();
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let to_dir = dir.path().join("to-dir");
        std::os::unix::fs::symlink(&sub, &to_dir).unwrap();
        let err = write_atomic(&to_dir, b"x", false).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::IsADirectory);
        assert!(
            std::fs::symlink_metadata(&to_dir)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 0);
        assert!(write_atomic(&sub, b"x", false).is_err());
    }

    /// `-o FIFO` (and `-o /dev/null`) write into the special file; it stays one.
    #[cfg(unix)]
    #[test]
    fn special_files_are_written_in_place() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        write_atomic(&fifo, b"through the pipe", false).unwrap();
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        let meta = std::fs::symlink_metadata(&fifo).unwrap();
        assert!(meta.file_type().is_fifo());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

/// Whether `path` (or the nearest directory above it that exists) is on a
/// tmpfs, as `/proc/self/mountinfo` says (Linux; `false` where it cannot
/// be read): memory, where a write costs no I/O and an fsync nothing.
pub fn on_tmpfs(path: &Path) -> bool {
    let mut dir = match std::path::absolute(path) {
        Ok(p) => p,
        Err(_) => return false,
    };
    while !dir.exists() {
        match dir.parent() {
            Some(p) => dir = p.to_owned(),
            None => return false,
        }
    }
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE ...
    let mut best: Option<(usize, bool)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(point), Some(dash)) = (fields.get(4), fields.iter().position(|f| *f == "-"))
        else {
            continue;
        };
        let point = point.replace("\\040", " ");
        let fstype = fields.get(dash + 1).copied().unwrap_or_default();
        if dir.starts_with(&point) && best.is_none_or(|(len, _)| point.len() >= len) {
            best = Some((point.len(), fstype == "tmpfs"));
        }
    }
    best.is_some_and(|(_, tmpfs)| tmpfs)
}

#[cfg(test)]
mod tmpfs_tests {
    use super::*;

    #[test]
    fn a_path_under_a_tmpfs_mount_is_in_memory_and_proc_is_not() {
        assert!(!on_tmpfs(Path::new("/proc/self")));
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        // A tmpfs mount that nothing else is mounted under (/dev/shm, /run).
        let point = info.lines().find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-")?;
            (f.get(dash + 1) == Some(&"tmpfs")).then(|| f[4].to_owned())
        });
        if let Some(point) = point
            && !info.lines().any(|l| {
                l.split(' ')
                    .nth(4)
                    .is_some_and(|p| p != point && p.starts_with(&format!("{point}/")))
            })
        {
            assert!(
                on_tmpfs(&Path::new(&point).join("not-there/yet")),
                "{point}"
            );
        }
    }
}
