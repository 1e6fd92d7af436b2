//! The recorder's inputs on arbitrary bytes: a capture file, a frame of
//! each link type (as files and packet sockets give them), and report
//! lines and datagrams in any order through the live [`Recorder`]: no
//! panic.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sipseal::record::{Recorder, capture};

fuzz_target!(|data: &[u8]| {
    let _ = capture::read(data);
    for link in [0, 1, 12, 101, 108, 113, 228, 229, 276] {
        let _ = capture::frame_datagram(link, Duration::ZERO, data);
    }
    // Report lines up to the first NUL, then IP packets of 200 octets at
    // most, a line again after each tenth.
    let (text, rest) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(text);
    let mut lines = text.lines();
    let mut rec = Recorder::new(&[]);
    if let Some(l) = lines.next() {
        let _ = rec.report_line(l);
    }
    for (i, piece) in rest.chunks(200).enumerate() {
        let at = Duration::from_millis(i as u64 * 20);
        match capture::frame_datagram(capture::RAW, at, piece) {
            Some(d) => rec.datagram(d),
            None => rec.skipped_frame(),
        }
        if i % 10 == 9 {
            if let Some(l) = lines.next() {
                let _ = rec.report_line(l);
            }
            rec.expire(at);
        }
    }
    for l in lines {
        let _ = rec.report_line(l);
    }
    let _ = rec.finish();
});
