//! `sipseal record --interface`: the recording server on live input. The
//! frames come from a packet socket ([`sipseal::net::packet`]), the keys
//! from the report, which is followed as the relay appends to it (its
//! `--record` spool grows as calls start); both go to the library's
//! [`Recorder`] as they come. SIGINT or SIGTERM (read from a signalfd, no
//! handler) or `--duration` ends the recording; the caller writes it.

use std::fs::File;
use std::io::Read as _;
use std::os::fd::AsFd as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use sipseal::net::packet::{Frame, PacketSocket};
use sipseal::record::{Recorder, Recording, capture};

use crate::error::Error;

/// How often the report is looked at for lines the relay appended.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

/// Frames read in one turn before the report and the clock are looked at.
const BATCH: usize = 4096;

/// A report line longer than this without its newline is dropped (the
/// relay's lines are a few kB).
const MAX_LINE: usize = 16 << 20;

/// Record from `interface` the calls of the report at `report` (`wanted`
/// only, when given) until a signal or `duration`; or until the socket
/// fails, when the error comes back with what was recorded up to it.
pub fn record(
    interface: &str,
    report: &Path,
    wanted: &[String],
    duration: Option<Duration>,
) -> Result<(Recording, Option<Error>), Error> {
    let name = report.display().to_string();
    // Blocked before anything can take long: a signal sent at any time
    // from here on waits in the signalfd instead of ending the process.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGTERM);
    let signal_err = |e: nix::Error| Error::Write {
        name: "signals".into(),
        source: e.into(),
    };
    mask.thread_block().map_err(signal_err)?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(signal_err)?;

    let read_err = |source| Error::Read {
        name: name.clone(),
        source,
    };
    let mut follow = Follow::open(report).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::usage(
            format!("--report {name}: no such file"),
            "start the relay first (`relay --record DIR` creates DIR/keys.jsonl), or give the file its --report writes",
        ),
        _ => read_err(e),
    })?;
    let mut rec = Recorder::new(wanted);
    // The lines there at the start are the report as `--capture` reads it:
    // one that cannot be used stops here.
    for line in follow.lines().map_err(read_err)? {
        rec.report_line(&line).map_err(|err| Error::Record {
            name: name.clone(),
            err,
        })?;
    }
    let sock = PacketSocket::open(interface).map_err(Error::Packet)?;
    let until = match duration {
        Some(d) => format!("for {}", humantime::format_duration(d)),
        None => "until SIGINT or SIGTERM".into(),
    };
    eprintln!(
        "record: reading {interface} (ifindex {}), following {name} ({} calls so far), {until}",
        sock.ifindex(),
        rec.calls()
    );

    let start = Instant::now();
    let deadline = duration.map(|d| start + d);
    let mut next_follow = start + FOLLOW_EVERY;
    let mut buf = vec![0u8; 1 << 18];
    let mut broke = None;
    'turns: loop {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        if now >= next_follow {
            take_lines(&mut follow, &mut rec, &name);
            rec.expire(wall_clock());
            next_follow = now + FOLLOW_EVERY;
        }
        let wake = deadline.map_or(next_follow, |d| d.min(next_follow));
        let ms = wake.saturating_duration_since(now).as_millis() + 1;
        let timeout = PollTimeout::from(u16::try_from(ms).unwrap_or(u16::MAX));
        let mut fds = [
            PollFd::new(sock.as_fd(), PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => {
                broke = Some(packet_io(interface, e));
                break;
            }
        }
        if let Ok(Some(sig)) = signals.read_signal() {
            let sig = Signal::try_from(sig.ssi_signo as i32).map_or("a signal", |s| s.as_str());
            eprintln!("record: {sig}: stopping");
            break;
        }
        for _ in 0..BATCH {
            match sock.recv(&mut buf) {
                Ok(Some(frame)) => take_frame(&mut rec, frame, &buf),
                Ok(None) => break,
                Err(e) => {
                    broke = Some(Error::Packet(e));
                    break 'turns;
                }
            }
        }
    }
    // What the relay wrote and the interface carried up to the end.
    take_lines(&mut follow, &mut rec, &name);
    for _ in 0..BATCH * 16 {
        match sock.recv(&mut buf) {
            Ok(Some(frame)) if broke.is_none() => take_frame(&mut rec, frame, &buf),
            _ => break,
        }
    }
    if let Some(e) = &broke {
        eprintln!("record: {e}: stopping; writing what was recorded");
    }
    let recording = rec.finish();
    for w in wanted {
        if !recording.calls.iter().any(|c| c.call_id == *w) {
            eprintln!("warning: --call {w}: no line of the report named this call");
        }
    }
    Ok((recording, broke))
}

fn packet_io(interface: &str, e: nix::Error) -> Error {
    Error::Packet(sipseal::net::packet::PacketError::Io {
        interface: interface.to_owned(),
        source: e.into(),
    })
}

/// Now, as a capture stamps it: since the Unix epoch.
fn wall_clock() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn take_frame(rec: &mut Recorder, frame: Frame, buf: &[u8]) {
    let data = buf.get(..frame.len).unwrap_or_default();
    match capture::link_of_hatype(frame.hatype)
        .and_then(|link| capture::frame_datagram(link, wall_clock(), data))
    {
        Some(d) => rec.datagram(d),
        None => rec.skipped_frame(),
    }
}

/// The lines appended since the last look: a line that cannot be used is
/// skipped with a warning, the recording goes on.
fn take_lines(follow: &mut Follow, rec: &mut Recorder, name: &str) {
    match follow.lines() {
        Ok(lines) => {
            for line in lines {
                if let Err(e) = rec.report_line(&line) {
                    eprintln!("warning: {name}: {e} (line skipped)");
                }
            }
        }
        Err(e) => eprintln!("warning: {name}: {e} (read again in {FOLLOW_EVERY:?})"),
    }
}

/// A file read as it grows: the complete lines appended since the last
/// look. When the file at the path is another one (the relay moves its
/// spool to FILE.1 past `--rotate-at` and starts a new FILE) or shrank,
/// the rest of the old one is read, then the new one from its start.
struct Follow {
    path: PathBuf,
    file: File,
    /// (device, inode) of `file`.
    id: (u64, u64),
    pos: u64,
    partial: Vec<u8>,
}

impl Follow {
    fn open(path: &Path) -> std::io::Result<Follow> {
        let file = File::open(path)?;
        let m = file.metadata()?;
        Ok(Follow {
            path: path.to_owned(),
            file,
            id: (m.dev(), m.ino()),
            pos: 0,
            partial: Vec::new(),
        })
    }

    fn lines(&mut self) -> std::io::Result<Vec<String>> {
        let mut out = Vec::new();
        self.read(&mut out)?;
        let again = match std::fs::metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) != self.id => {
                self.file = File::open(&self.path)?;
                let m = self.file.metadata()?;
                self.id = (m.dev(), m.ino());
                true
            }
            Ok(m) if m.len() < self.pos => {
                self.file = File::open(&self.path)?;
                true
            }
            // Gone for a moment (between the rename and the new file):
            // the next look finds the new one.
            _ => false,
        };
        if again {
            self.pos = 0;
            self.partial.clear();
            self.read(&mut out)?;
        }
        Ok(out)
    }

    fn read(&mut self, out: &mut Vec<String>) -> std::io::Result<()> {
        let mut got = Vec::new();
        self.file.read_to_end(&mut got)?;
        self.pos += got.len() as u64;
        self.partial.extend_from_slice(&got);
        if let Some(end) = memchr::memrchr(b'\n', &self.partial) {
            let rest = self.partial.split_off(end + 1);
            let done = std::mem::replace(&mut self.partial, rest);
            out.extend(
                done.split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(|l| String::from_utf8_lossy(l).into_owned()),
            );
        }
        if self.partial.len() > MAX_LINE {
            self.partial.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn a_followed_file_gives_complete_lines_only_and_survives_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.jsonl");
        let mut f = File::create(&path).unwrap();
        f.write_all(b"one\ntw").unwrap();
        let mut follow = Follow::open(&path).unwrap();
        assert_eq!(follow.lines().unwrap(), ["one"]);
        assert!(follow.lines().unwrap().is_empty());
        f.write_all(b"o\nthree\n").unwrap();
        assert_eq!(follow.lines().unwrap(), ["two", "three"]);
        // Rotated: the old file's last line, then the new file's.
        f.write_all(b"four\n").unwrap();
        std::fs::rename(&path, dir.path().join("keys.jsonl.1")).unwrap();
        std::fs::write(&path, b"five\n").unwrap();
        assert_eq!(follow.lines().unwrap(), ["four", "five"]);
        // Truncated in place.
        std::fs::write(&path, b"").unwrap();
        assert!(follow.lines().unwrap().is_empty());
        std::fs::write(&path, b"six\n").unwrap();
        assert_eq!(follow.lines().unwrap(), ["six"]);
    }
}
