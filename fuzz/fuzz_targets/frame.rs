//! The stream framer (and the routing parsers: SIP URIs, the hosts file)
//! on arbitrary bytes cut into arbitrary reads: no panic, no message over
//! the limit, never more bytes out than in, and the same messages
//! whatever the reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipseal::net::frame::{Frame, Framer};

const LIMIT: usize = 4096;

fn frames(data: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let mut f = Framer::new(LIMIT);
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        f.push(piece);
        loop {
            match f.next_frame() {
                Ok(Frame::Partial) => break,
                Ok(Frame::KeepAlive { .. }) => {}
                Ok(Frame::Message(m)) => {
                    assert!(m.len() <= LIMIT);
                    let _ = sipseal::sip::Message::parse(&m);
                    out.push(m);
                }
                Err(_) => return out,
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let whole = frames(rest, rest.len());
    let pieces = frames(rest, usize::from(cut % 16) + 1);
    assert!(whole.iter().map(Vec::len).sum::<usize>() <= rest.len());
    assert_eq!(whole, pieces);
    if let Ok(text) = std::str::from_utf8(rest) {
        let _ = sipseal::sip::uri::HopUri::parse(text);
        let _ = sipseal::net::Hosts::parse(text);
    }
});
