//! The server transaction layer of a UAS that answers non-INVITE requests
//! (RFC 3261 §17.2.2): a retransmitted request gets the same response
//! again instead of being processed again. A request is matched to its
//! transaction by its top Via's branch and sent-by and its method (§17.2.3);
//! the response is kept for Timer J (64 × T1 = 32 s) and the table is
//! bounded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::message::Message;

/// How long a final response is kept for retransmissions (Timer J).
pub const TIMER_J: Duration = Duration::from_secs(32);

/// Transactions kept at most; past it the oldest half goes.
const MAX: usize = 100_000;

/// A transaction's identity (RFC 3261 §17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    branch: String,
    sent_by: String,
    method: String,
}

fn key(msg: &Message) -> Option<Key> {
    let via = msg.top_via().ok()?;
    let branch = via.branch()?.to_owned();
    // Only RFC 3261 branches identify a transaction by themselves.
    if !branch.starts_with("z9hG4bK") {
        return None;
    }
    Some(Key {
        branch,
        sent_by: via.sent_by().to_ascii_lowercase(),
        method: msg.method()?.to_owned(),
    })
}

/// The final responses of recent transactions.
#[derive(Debug, Default)]
pub struct Transactions {
    done: Mutex<HashMap<Key, (Instant, Vec<u8>)>>,
}

impl Transactions {
    /// No transactions yet.
    pub fn new() -> Transactions {
        Transactions::default()
    }

    /// The response already sent for the transaction `request` belongs
    /// to, when it is a retransmission.
    pub fn answered(&self, request: &Message) -> Option<Vec<u8>> {
        let key = key(request)?;
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        done.get(&key)
            .filter(|(at, _)| at.elapsed() < TIMER_J)
            .map(|(_, r)| r.clone())
    }

    /// Keep `response` as the final answer to `request`.
    pub fn remember(&self, request: &Message, response: &Message) {
        let Some(key) = key(request) else { return };
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        if done.len() >= MAX {
            done.retain(|_, (at, _)| at.elapsed() < TIMER_J);
            if done.len() >= MAX / 2 {
                let mut ages: Vec<Instant> = done.values().map(|(at, _)| *at).collect();
                ages.sort();
                let cut = ages[ages.len() / 2];
                done.retain(|_, (at, _)| *at > cut);
            }
        }
        done.insert(key, (Instant::now(), response.to_bytes()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(branch: &str, method: &str) -> Message {
        Message::parse(
            format!(
                "{method} sip:a.example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch={branch}\r\nFrom: <sip:alice@a.example.com>;tag=1\r\nTo: <sip:alice@a.example.com>\r\nCall-ID: r\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn a_retransmission_gets_the_same_response() {
        let t = Transactions::new();
        let req = register("z9hG4bK1", "REGISTER");
        assert_eq!(t.answered(&req), None);
        let resp = Message::parse(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
        t.remember(&req, &resp);
        assert_eq!(t.answered(&req), Some(resp.to_bytes()));
        assert_eq!(t.answered(&register("z9hG4bK2", "REGISTER")), None);
        assert_eq!(t.answered(&register("z9hG4bK1", "OPTIONS")), None);
        // An RFC 2543 branch does not identify a transaction.
        t.remember(&register("old", "REGISTER"), &resp);
        assert_eq!(t.answered(&register("old", "REGISTER")), None);
    }
}
