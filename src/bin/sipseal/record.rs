//! `sipseal record`: the recording server on a capture file, or live on an
//! interface (`crate::record_live`). The library ([`sipseal::record`])
//! matches packets to calls and decrypts them; this reads the report and
//! the capture, and writes each call's files (atomically, plaintext mode
//! 0600) under `--out`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use sipseal::record::{Calls, RecordError, Recording, Summary, capture};

use crate::error::{Error, Exit};
use crate::io::{Format, render, write_file, write_output};

/// `record` arguments.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["capture", "interface"])))]
pub struct RecordArgs {
    /// The relay's disclosure report as JSON lines (`relay --report FILE`,
    /// `relay --record DIR`'s DIR/keys.jsonl, or `proxy --report FILE
    /// --report-format json`): each call's SDP, media addresses and SRTP
    /// keys. With --interface it is followed: lines appended while
    /// recording are read as they come.
    #[arg(long, value_name = "FILE")]
    pub report: PathBuf,
    /// The media: a pcap or pcapng capture (tcpdump, dumpcap, tshark;
    /// Ethernet, Linux cooked v1/v2, raw IP or loopback).
    #[arg(long, value_name = "FILE")]
    pub capture: Option<PathBuf>,
    /// The media, live: the packets copied to this interface (nftables
    /// `dup to`, a mirror port), read from a packet socket (Linux; root or
    /// CAP_NET_RAW), until SIGINT or SIGTERM or --duration; then the files
    /// are written.
    #[arg(long, value_name = "IFACE")]
    pub interface: Option<String>,
    /// With --interface: stop after this long (e.g. 90s, 30m, 2h).
    #[arg(long, value_name = "DURATION", requires = "interface", value_parser = parse_std_duration)]
    pub duration: Option<std::time::Duration>,
    /// Where to write: a directory per call (a hash of its Call-ID; calls.json
    /// maps them), holding per sender and stream the decrypted RTP
    /// (.pcap), the audio (.wav, G.711 and L16) and a summary (.json).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Record only this call (repeatable); every call of the report by
    /// default. With --interface a call the report names later counts too.
    #[arg(long = "call", value_name = "CALL-ID")]
    pub calls: Vec<String>,
    /// The summary on standard output.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// `30s`, `5m`, `2h`, or plain seconds.
fn parse_std_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::args::parse_duration(s)?
        .try_into()
        .map_err(|_| "a duration must not be negative".to_owned())
}

/// What `record` prints.
#[derive(Debug, Serialize)]
struct Printed {
    calls: Vec<PrintedCall>,
    unmatched_datagrams: u64,
    /// Live: datagrams of no known call the wait for keys had no room for.
    wait_overflow: u64,
    skipped_frames: u64,
}

#[derive(Debug, Serialize)]
struct PrintedCall {
    call_id: String,
    dir: String,
    without_key: u64,
    before_keys: u64,
    directions: Vec<Summary>,
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        name: path.display().to_string(),
        source,
    })
}

/// Run `record`.
pub fn run(args: RecordArgs) -> Result<Exit, Error> {
    let (recording, broke) = match (&args.capture, &args.interface) {
        (Some(capture), _) => (from_file(&args, capture)?, None),
        (None, Some(interface)) => live(&args, interface)?,
        // clap's `input` group asks for one of them.
        (None, None) => {
            return Err(Error::usage(
                "give --capture FILE or --interface IFACE",
                "see `sipseal record --help`",
            ));
        }
    };
    let exit = output(&args, &recording)?;
    // The input failed on the way: what came before it is written, and
    // the error is still the outcome.
    match broke {
        Some(e) => Err(e),
        None => Ok(exit),
    }
}

#[cfg(all(feature = "live", target_os = "linux"))]
fn live(args: &RecordArgs, interface: &str) -> Result<(Recording, Option<Error>), Error> {
    crate::record_live::record(interface, &args.report, &args.calls, args.duration)
}

#[cfg(not(all(feature = "live", target_os = "linux")))]
fn live(_: &RecordArgs, interface: &str) -> Result<(Recording, Option<Error>), Error> {
    Err(Error::usage(
        format!("--interface {interface}: this sipseal reads no live input"),
        "live input needs Linux and the `live` feature; capture with tcpdump -w and give --capture FILE",
    ))
}

fn from_file(args: &RecordArgs, capture: &Path) -> Result<Recording, Error> {
    let report = read(&args.report)?;
    let report = String::from_utf8(report).map_err(|_| {
        Error::usage(
            format!("--report {}: not UTF-8 text", args.report.display()),
            "give the JSON-lines file `relay --report` writes",
        )
    })?;
    let name = args.report.display().to_string();
    let calls = Calls::parse(&report).map_err(|err| Error::Record {
        name: name.clone(),
        err,
    })?;
    let bytes = read(capture)?;
    let cap = capture::read(&bytes).map_err(|e| Error::Record {
        name: capture.display().to_string(),
        err: RecordError::Capture(e),
    })?;
    drop(bytes);
    sipseal::record::record(&calls, &args.calls, &cap).map_err(|err| Error::Record { name, err })
}

/// Write the files, print the summary, and say how it went.
fn output(args: &RecordArgs, recording: &Recording) -> Result<Exit, Error> {
    write_all(&args.out, recording)?;
    let printed = Printed {
        calls: recording
            .calls
            .iter()
            .map(|c| PrintedCall {
                call_id: c.call_id.clone(),
                dir: args.out.join(&c.tag).display().to_string(),
                without_key: c.without_key,
                before_keys: c.before_keys,
                directions: c.directions.iter().map(|d| d.summary.clone()).collect(),
            })
            .collect(),
        unmatched_datagrams: recording.unmatched,
        wait_overflow: recording.wait_overflow,
        skipped_frames: recording.skipped,
    };
    let text = render(args.format, &printed, to_text)?;
    write_output(None, text.as_bytes())?;
    // Media there was, and not one packet of it authenticated: a wrong key.
    let failed: u64 = printed
        .calls
        .iter()
        .flat_map(|c| &c.directions)
        .map(|d| d.auth_failures + d.srtcp_auth_failures)
        .sum();
    let decrypted: u64 = printed
        .calls
        .iter()
        .flat_map(|c| &c.directions)
        .map(|d| d.packets + d.srtcp_packets)
        .sum();
    if failed > 0 && decrypted == 0 {
        eprintln!("error: every packet of the calls failed SRTP authentication: nothing recorded");
        eprintln!(
            "hint: check that --report is the report of the relay these calls went through, and that the capture is of these calls"
        );
        return Ok(Exit::Failed);
    }
    Ok(Exit::Ok)
}

fn write_all(out: &Path, rec: &Recording) -> Result<(), Error> {
    let dir_err = |p: &Path, source| Error::Write {
        name: p.display().to_string(),
        source,
    };
    make_private_dir(out).map_err(|e| dir_err(out, e))?;
    let index_path = out.join("calls.json");
    let mut index: BTreeMap<String, String> = std::fs::read(&index_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    for call in &rec.calls {
        let dir = out.join(&call.tag);
        make_private_dir(&dir).map_err(|e| dir_err(&dir, e))?;
        for d in &call.directions {
            let stem = &d.summary.direction;
            if let Some(pcap) = &d.pcap {
                write_file(&dir.join(format!("{stem}.pcap")), pcap, true)?;
            }
            if let Some(wav) = &d.wav {
                write_file(&dir.join(format!("{stem}.wav")), wav, true)?;
            }
            let mut json = serde_json::to_vec_pretty(&d.summary).unwrap_or_default();
            json.push(b'\n');
            write_file(&dir.join(format!("{stem}.json")), &json, true)?;
        }
        index.insert(call.tag.clone(), call.call_id.clone());
    }
    let mut json = serde_json::to_vec_pretty(&index).unwrap_or_default();
    json.push(b'\n');
    write_file(&index_path, &json, true)
}

fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

fn to_text(p: &Printed) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for c in &p.calls {
        let _ = writeln!(out, "call {} -> {}", c.call_id, c.dir);
        if c.directions.is_empty() {
            out.push_str("  no packets of this call\n");
        }
        for d in &c.directions {
            let _ = write!(
                out,
                "  {}: {} packets ({} bytes), {} lost, {} out of order, {} auth failures; SRTCP {} ({} auth failures)",
                d.direction,
                d.packets,
                d.bytes,
                d.lost,
                d.out_of_order,
                d.auth_failures,
                d.srtcp_packets,
                d.srtcp_auth_failures
            );
            if d.rtcp_unprotected > 0 {
                let _ = write!(
                    out,
                    "; {} plain RTCP (no SRTCP, not written)",
                    d.rtcp_unprotected
                );
            }
            if d.not_kept > 0 {
                let _ = write!(out, "; {} more not kept (over the cap)", d.not_kept);
            }
            if d.key_exhausted > 0 {
                let _ = write!(out, "; {} past the key's lifetime", d.key_exhausted);
            }
            match &d.wav {
                Some(w) if w.samples > 0 => {
                    let _ = write!(
                        out,
                        "; WAV {} {} Hz, {:.1} s",
                        w.codec,
                        w.rate,
                        w.samples as f64 / f64::from(w.rate)
                    );
                }
                _ => {}
            }
            out.push('\n');
            for n in &d.notes {
                let _ = writeln!(out, "    note: {n}");
            }
        }
        if c.before_keys > 0 {
            let _ = writeln!(
                out,
                "  {} packets came before the call's keys: kept until they came",
                c.before_keys
            );
        }
        if c.without_key > 0 {
            let _ = writeln!(
                out,
                "  {} packets of a party without an SRTP key (not recorded)",
                c.without_key
            );
        }
    }
    if p.unmatched_datagrams > 0 || p.skipped_frames > 0 {
        let _ = writeln!(
            out,
            "{} UDP datagrams of no call in the report, {} frames not UDP",
            p.unmatched_datagrams, p.skipped_frames
        );
    }
    if p.wait_overflow > 0 {
        let _ = writeln!(
            out,
            "{} datagrams of no call yet found no room to wait for keys",
            p.wait_overflow
        );
    }
    out
}
