//! The warm path of benches/session.rs as a plain loop, for counting
//! instructions where wall time is noise (a busy machine, a CI runner):
//!
//! ```sh
//! cargo build --profile bench --example warm_open
//! perf stat -e instructions:u target/release/examples/warm_open sip 100000
//! ```
//!
//! `benches/warm-path.sh --instructions` runs it twice (N and 2N
//! iterations) and prints the difference per iteration: the setup cancels
//! out. WHAT is `sip` (open a SIP message), `envelope` (open the bare
//! envelope) or `seal` (seal a SIP message).

use std::hint::black_box;
use std::path::Path;

use sipseal::context::Context;
use sipseal::envelope::Envelope;
use sipseal::sealing::{detect, open_input, seal_session};
use sipseal::session::SessionKey;
use sipseal::sip::Message;

/// The allocator the sipseal binary runs with, as in benches/session.rs.
#[cfg(feature = "cli")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(what), Some(n)) = (args.next(), args.next().and_then(|n| n.parse::<u64>().ok()))
    else {
        eprintln!("usage: warm_open sip|envelope|seal ITERATIONS");
        std::process::exit(2);
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let invite = Message::parse(&std::fs::read(root.join("samples/invite.sip")).unwrap()).unwrap();
    let key = SessionKey::derive(invite.call_id().unwrap(), &[7u8; 32]);
    let mut ctx = Context::new(Some(b"bench"), None);
    let sealed = seal_session(&invite, &key, &mut ctx).unwrap();
    let wire = sealed.message.to_bytes();
    let keys = [key.recipient_key()];
    for _ in 0..n {
        match what.as_str() {
            "sip" => {
                let input = detect(black_box(&wire)).unwrap();
                black_box(open_input(input, &keys, ctx.rng()).unwrap().message);
            }
            "envelope" => {
                let env = Envelope::parse(black_box(&sealed.der)).unwrap();
                black_box(env.open(&keys, ctx.rng()).unwrap());
            }
            "seal" => {
                black_box(seal_session(black_box(&invite), &key, &mut ctx).unwrap());
            }
            other => {
                eprintln!("warm_open: unknown {other:?}: sip, envelope or seal");
                std::process::exit(2);
            }
        }
    }
}
