//! The Route-Security chain of a message (docs/SPEC.md §3.4), checked.

use super::{Check, RouteReport, VerifyOptions};
use crate::sip::Message;
use crate::sip::route_security::{self, RouteEntry, via_sent_by};

/// The Route-Security chain (entries top first): the top one naming
/// `received_from` when given; on a request with `min_route_level`, every
/// link accounted for (entries line up with Vias, both counted from the
/// bottom) and the weakest link (a level-less entry counts as 0) at least
/// the minimum; on a response, the entry at this party's position (its
/// Via's) naming it, as each relay checks its own. `None` when the message
/// has no entries and nothing was asked.
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
        match entries.first() {
            Some(e) if e.names(from) => checks.push(Check::pass(
                "received from",
                format!("the top entry names {from}"),
            )),
            Some(e) => checks.push(Check::fail(
                "received from",
                format!(
                    "the top entry names {}, not {from}: the last link is unaccounted for",
                    e.addr
                ),
            )),
            None => checks.push(Check::fail(
                "received from",
                format!("no Route-Security entry: the link from {from} is unaccounted for"),
            )),
        }
    }
    if !msg.is_request() && !entries.is_empty() {
        checks.push(own_entry(msg, &entries));
    }
    if let Some(min) = opts.min_route_level {
        if msg.is_request() {
            checks.push(accounted(msg, &entries));
        } else if entries.is_empty() {
            checks.push(Check::fail(
                "accounted",
                "the response carries no Route-Security entries back",
            ));
        }
        checks.push(level(&entries, min));
    }
    Some(RouteReport { entries, checks })
}

/// Each Via is a hop that sent the request: counted from the bottom (the
/// caller's first), the n-th entry must name the n-th Via.
fn accounted(msg: &Message, entries: &[RouteEntry]) -> Check {
    let vias: Vec<String> = msg
        .header_list("Via")
        .into_iter()
        .rev()
        .filter_map(|v| via_sent_by(v).map(str::to_owned))
        .collect();
    let mut gaps = Vec::new();
    for (i, via) in vias.iter().enumerate() {
        match route_security::from_bottom(entries, i) {
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
        Check::pass(
            "accounted",
            format!("{} link(s), one entry per Via", vias.len()),
        )
    } else {
        Check::fail(
            "accounted",
            format!("unaccounted link(s): {}", gaps.join("; ")),
        )
    }
}

/// The weakest link against `min`, named (the one nearest the top among
/// equals), as a relay's `--min-route-level` names it in its Warning.
fn level(entries: &[RouteEntry], min: u8) -> Check {
    let weakest = entries
        .iter()
        .fold(None::<&RouteEntry>, |low, e| match low {
            Some(l) if l.counts_as() <= e.counts_as() => Some(l),
            _ => Some(e),
        });
    match weakest {
        Some(w) if w.counts_as() < min => {
            let others: Vec<String> = entries
                .iter()
                .filter(|e| e.counts_as() < min && !std::ptr::eq(*e, w))
                .map(RouteEntry::describe)
                .collect();
            let mut detail = format!(
                "the weakest link, {}, is below the minimum level {min}",
                w.describe()
            );
            if !others.is_empty() {
                detail.push_str(&format!(" (also below: {})", others.join(", ")));
            }
            Check::fail("level", detail)
        }
        _ => Check::pass("level", format!("every link is level {min} or above")),
    }
}

/// A response: the entry at the position of the top Via's hop (this
/// party's; its `rs-pos`, else the number of Vias below it) names that
/// hop's sent-by.
fn own_entry(msg: &Message, entries: &[RouteEntry]) -> Check {
    let me = msg
        .header_list("Via")
        .first()
        .and_then(|v| via_sent_by(v))
        .map(str::to_owned);
    let (Some(me), Some(pos)) = (me, route_security::own_position(msg)) else {
        return Check::fail("own entry", "the response's Vias do not parse");
    };
    let from_top = entries.len().saturating_sub(pos);
    match route_security::from_bottom(entries, pos) {
        Some(e) if e.names(&me) => Check::pass(
            "own entry",
            format!("the entry at this party's position ({from_top} from the top) names {me}"),
        ),
        Some(e) => Check::fail(
            "own entry",
            format!(
                "the entry at this party's position ({from_top} from the top) is {}, not {me}: the response did not come back along the request's path",
                e.addr
            ),
        ),
        None => Check::fail(
            "own entry",
            format!(
                "{} entries came back, too few to hold this party's ({me}) at position {} from the bottom",
                entries.len(),
                pos + 1
            ),
        ),
    }
}
