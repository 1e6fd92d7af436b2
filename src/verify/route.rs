//! The Route-Security chain of a message (docs/SPEC.md §3.4), checked.

use super::{Check, RouteReport, VerifyOptions};
use crate::sip::Message;
use crate::sip::route_security::{self, via_sent_by};

/// The Route-Security chain: every link accounted for (a request's entries
/// line up with its Vias, oldest first), each at least `min` when given,
/// and the newest naming `received_from` when given. `None` when the
/// message has no entries and nothing was asked.
pub fn verify_route(msg: &Message, opts: &VerifyOptions<'_>) -> Option<RouteReport> {
    let parsed = route_security::entries(msg);
    if parsed.is_empty() && opts.min_route_level.is_none() && opts.received_from.is_none() {
        return None;
    }
    let mut checks = Vec::new();
    let mut entries = Vec::new();
    for e in parsed {
        match e {
            Ok(e) => entries.push(e),
            Err(why) => checks.push(Check::fail("entry", why.to_string())),
        }
    }
    if let Some(from) = opts.received_from {
        match entries.last() {
            Some(e) if e.names(from) => checks.push(Check::pass(
                "received from",
                format!("the newest entry names {from}"),
            )),
            Some(e) => checks.push(Check::fail(
                "received from",
                format!(
                    "the newest entry names {}, not {from}: the last link is unaccounted for",
                    e.addr
                ),
            )),
            None => checks.push(Check::fail(
                "received from",
                format!("no Route-Security entry: the link from {from} is unaccounted for"),
            )),
        }
    }
    if let Some(min) = opts.min_route_level {
        if msg.is_request() {
            // Each Via is a hop that sent the request; bottom (the UA) first.
            let vias: Vec<String> = msg
                .header_list("Via")
                .into_iter()
                .rev()
                .filter_map(|v| via_sent_by(v).map(str::to_owned))
                .collect();
            let mut gaps = Vec::new();
            for (i, via) in vias.iter().enumerate() {
                match entries.get(i) {
                    Some(e) if e.names(via) => {}
                    Some(e) => gaps.push(format!(
                        "link {} (sent by {via}) has entry {} instead",
                        i + 1,
                        e.addr
                    )),
                    None => gaps.push(format!("link {} (sent by {via}) has no entry", i + 1)),
                }
            }
            if entries.len() > vias.len() {
                gaps.push(format!("{} entries for {} hops", entries.len(), vias.len()));
            }
            if gaps.is_empty() {
                checks.push(Check::pass(
                    "accounted",
                    format!("{} link(s), one entry per Via", vias.len()),
                ));
            } else {
                checks.push(Check::fail(
                    "accounted",
                    format!("unaccounted link(s): {}", gaps.join("; ")),
                ));
            }
        } else if entries.is_empty() {
            checks.push(Check::fail(
                "accounted",
                "the response carries no Route-Security entries back",
            ));
        }
        let low: Vec<String> = entries
            .iter()
            .filter(|e| e.level < min)
            .map(|e| format!("{} is level {}", e.addr, e.level))
            .collect();
        if low.is_empty() {
            checks.push(Check::pass(
                "level",
                format!("every link is level {min} or above"),
            ));
        } else {
            checks.push(Check::fail(
                "level",
                format!("below level {min}: {}", low.join(", ")),
            ));
        }
    }
    Some(RouteReport { entries, checks })
}
