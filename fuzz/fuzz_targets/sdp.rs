//! The SDP readers on arbitrary text: no panic; the data channel's
//! description (issue 29) reads back as it writes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipseal::datachannel::sdp::ChannelSdp;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sipseal::sdp::Sdp::parse(text);
    }
    if let Ok(channel) = ChannelSdp::parse(data) {
        let again = ChannelSdp::parse(channel.to_text(1).as_bytes()).expect("its own text parses");
        assert_eq!(again, channel);
    }
});
