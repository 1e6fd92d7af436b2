//! Path security at a relay (docs/SPEC.md §3.4, §3.5): the originator imposture
//! check (403), the connectivity policy (404, the same answer as an
//! unknown target), Route-Security, and signatures required (495).

use std::sync::Arc;

use time::OffsetDateTime;

use super::refusal::Refusal;
use crate::keys::Cert;
use crate::keys::trust::{check_chain, check_validity};
use crate::policy::{Bindings, Policy};
use crate::sip::route_security::{self, EntryForm, RouteEntry, RouteEntryError};
use crate::sip::{HeaderError, Message};

/// How a relay checks the path (shared by `proxy` and `reencrypt`).
#[derive(Debug, Clone, Default)]
pub struct PathOptions {
    /// The security level (0-3) of the link this relay sends on: puts
    /// `Route-Security: SENT-BY;level=N` on top of a request's entries,
    /// and checks its own entry on responses.
    pub link_level: Option<u8>,
    /// The form of the entries this relay writes.
    pub route_security_form: EntryForm,
    /// Answer a request whose weakest link (a level-less entry counts as
    /// 0) is below this level with 403 and a Warning naming it.
    pub min_route_level: Option<u8>,
    /// Where the message came from (`HOST[:PORT]`): the top
    /// Route-Security entry must name it, and the imposture check compares
    /// it with the From AOR's binding.
    pub received_from: Option<String>,
    /// The flow the message arrived on, where a stream's source port
    /// counts (`tcp:IP:PORT`, `tls:IP:PORT`; on UDP the same as
    /// `received_from`): the dialog neighbour a BYE must come from (M3).
    pub flow: Option<String>,
    /// The level of the link the message arrived on, when the connection
    /// shows it (a live relay: TLS with a verified client certificate is
    /// 3, TCP and UDP 0). A request whose top entry does not name the
    /// source gets `SOURCE;level=N` when this is above 0, else `SOURCE`
    /// without a level; one whose entry claims more than this gets a
    /// correcting entry.
    pub arrived_level: Option<u8>,
    /// Registered bindings for the imposture check (403 on mismatch).
    pub bindings: Option<Arc<Bindings>>,
    /// Connectivity allow-list (404 when denied).
    pub policy: Option<Arc<Policy>>,
    /// Answer 495 to a request that carries no signature, and 403 to one
    /// not signed by its From party.
    pub require_signature: bool,
    /// Trust anchors a signer's certificate must chain to before its
    /// signature counts as its party's (`--signer-trust`); none: no
    /// signature counts.
    pub trust: Arc<[Cert]>,
}

/// Why no signature counts as a party's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotSigned {
    /// The message names no AOR to compare a signer with.
    #[error("no AOR to compare the signer with")]
    NoAor,
    /// Nobody signed.
    #[error("no signature of {0}")]
    Unsigned(String),
    /// Others signed.
    #[error("signed by {by}, not by {aor}")]
    Others {
        /// Who signed.
        by: String,
        /// The party.
        aor: String,
    },
    /// The party signed, but its certificate is not trusted.
    #[error("the signer {aor} is not trusted: {why}")]
    Untrusted {
        /// The party.
        aor: String,
        /// Why.
        why: String,
    },
}

/// Whether one of `signers` (signatures that verified) is `aor`'s: its
/// SAN URI is the AOR, it chains to a trust anchor and is valid `now`
/// (no anchors: no signature counts).
pub(super) fn party_signer(
    signers: &[Cert],
    aor: Option<&str>,
    path: &PathOptions,
    now: OffsetDateTime,
) -> Result<(), NotSigned> {
    let aor = aor.ok_or(NotSigned::NoAor)?;
    let named: Vec<&Cert> = signers
        .iter()
        .filter(|c| c.uri().is_some_and(|u| u.eq_ignore_ascii_case(aor)))
        .collect();
    if named.is_empty() {
        let who: Vec<String> = signers.iter().map(Cert::name).collect();
        return Err(if who.is_empty() {
            NotSigned::Unsigned(aor.to_owned())
        } else {
            NotSigned::Others {
                by: who.join(", "),
                aor: aor.to_owned(),
            }
        });
    }
    if path.trust.is_empty() {
        // M2: anyone can make a certificate naming any AOR; without
        // anchors a signature speaks for nobody.
        return Err(NotSigned::Untrusted {
            aor: aor.to_owned(),
            why: "no trust anchors to check it against (give --signer-trust)".into(),
        });
    }
    let mut why = String::new();
    for cert in named {
        match check_chain(cert, &[], &path.trust).and_then(|_| check_validity(cert, now)) {
            Ok(()) => return Ok(()),
            Err(e) => why = e.to_string(),
        }
    }
    Err(NotSigned::Untrusted {
        aor: aor.to_owned(),
        why,
    })
}

/// What a relay checks before it parses anything deeper (docs/SPEC.md §4 step
/// 2): Max-Forwards (483), then the imposture check (403) and the
/// connectivity policy (404).
pub(super) fn admission(msg: &Message, path: &PathOptions) -> Result<Option<Refusal>, HeaderError> {
    if msg.is_request() && msg.max_forwards()? == Some(0) {
        return Ok(Some(Refusal::TooManyHops));
    }
    Ok(admit(msg, path))
}

/// The imposture check and the connectivity policy, for requests: an ACK
/// too (H1: refused, it is dropped unanswered); not a REGISTER, which is
/// how a binding comes to be (the registrar authenticates it).
fn admit(msg: &Message, path: &PathOptions) -> Option<Refusal> {
    if !checks_source(msg) {
        return None;
    }
    let from = msg.aor("From").unwrap_or_default();
    if let (Some(bindings), Some(source)) = (&path.bindings, &path.received_from)
        && let Err(why) = bindings.check(from, source)
    {
        return Some(Refusal::Imposture(why.to_string()));
    }
    if let Some(policy) = &path.policy {
        let to = msg.aor("To").unwrap_or_default();
        if !policy.allows(from, to) {
            return Some(Refusal::Denied {
                from: from.to_owned(),
                to: to.to_owned(),
            });
        }
    }
    None
}

/// Whether the imposture check applies to `msg`: every request but a
/// REGISTER.
pub(super) fn checks_source(msg: &Message) -> bool {
    msg.is_request() && msg.method() != Some("REGISTER")
}

/// `require_signature`: 495 when a request carries no signature
/// (`signed` says whether an opaque or inner one was found); 403 when its
/// outer signature has a `problem`: it does not verify, or the protected
/// headers were changed (the designations it protects cannot be trusted).
pub(super) fn require_signature(
    msg: &Message,
    outer: bool,
    problem: Option<String>,
    signed: bool,
    path: &PathOptions,
) -> Option<Refusal> {
    if !path.require_signature || !msg.is_request() || msg.method() == Some("ACK") {
        return None;
    }
    match (outer, problem) {
        (false, _) if signed => None,
        (false, _) => Some(Refusal::SignatureRequired),
        (true, problem) => problem.map(Refusal::BadSignature),
    }
}

/// What Route-Security asks of one message (docs/SPEC.md §3.4), decided before
/// anything deeper is parsed: the report's notes, the entries to put on
/// top, and a refusal (a request) or a reason to drop (a response).
#[derive(Debug, Default)]
pub(super) struct RouteStep {
    /// What was checked and written, for the report.
    pub notes: Vec<String>,
    /// The entries to put on top, in the order they go on (a level-less
    /// one for the link the request arrived on first, this relay's last).
    pub put: Vec<RouteEntry>,
    /// Where this relay's own entry sits, counted from the bottom: kept
    /// in its Via ([`route_security::POSITION_PARAM`]).
    pub own_at: Option<usize>,
    /// A request below `--min-route-level`: answered, not forwarded.
    pub refuse: Option<Refusal>,
    /// A response whose entry at this relay's position is not its own:
    /// dropped (a response cannot be answered).
    pub drop: Option<String>,
}

/// Route-Security for `msg` at this relay, whose Via sent-by is `sent_by`.
///
/// On a request: the top entry must name where it came from; when it is
/// missing, names another hop or does not parse, the relay puts an entry
/// **without a level** naming the previous hop on top (the link is
/// unchecked), or with the level the connection proves when it proves
/// more than 0 (mutual TLS). An entry that claims more than the
/// connection proves gets a correcting entry. Then the weakest link so far
/// (a level-less entry counts as 0) is held against `min_route_level`,
/// and the relay puts its own entry on top for the link it sends on.
///
/// On a response (it carries the request's entries back): the entry at
/// this relay's position must be its own, unchanged; a response that
/// carries no entries at all (a far end that does not copy them) is only
/// noted.
pub(super) fn route_security(msg: &Message, sent_by: &str, path: &PathOptions) -> RouteStep {
    let incoming = route_security::entries(msg);
    let mut step = RouteStep::default();
    if !msg.is_request() {
        if let Some(level) = path.link_level {
            match came_back(msg, &incoming, sent_by, level) {
                Ok(note) => step.notes.push(note),
                Err(why) => {
                    step.drop = Some(format!("Route-Security: {why}"));
                }
            }
        }
        return step;
    }
    if let Some(from) = &path.received_from {
        match incoming.first() {
            Some(Ok(e))
                if e.names(from) && path.arrived_level.is_some_and(|l| e.counts_as() > l) =>
            {
                let seen = path.arrived_level.unwrap_or_default();
                step.notes.push(format!(
                    "the top entry claims level {} for the link from {from}, but the connection is level {seen}",
                    e.counts_as()
                ));
                step.put.push(RouteEntry::new(from.clone(), seen));
            }
            Some(Ok(e)) if e.names(from) => step.notes.push(match e.level {
                Some(l) => format!("the link from {from} is level {l}"),
                None => format!("the link from {from} has no level (unchecked)"),
            }),
            other => {
                let named = match other {
                    Some(Ok(e)) => format!("names {}", e.addr),
                    Some(Err(why)) => format!("does not parse ({why})"),
                    None => "is missing".into(),
                };
                let entry = match path.arrived_level {
                    // The connection itself proves the level (mutual TLS).
                    Some(l) if l > 0 => {
                        step.notes.push(format!(
                            "the top entry {named}, not {from}: the connection from {from} is level {l}"
                        ));
                        RouteEntry::new(from.clone(), l)
                    }
                    _ => {
                        step.notes.push(format!(
                            "the top entry {named}, not {from}: added {from} without a level (an unchecked link, counted as level 0)"
                        ));
                        RouteEntry::unchecked(from.clone())
                    }
                };
                step.put.push(entry);
            }
        }
    }
    if let Some(min) = path.min_route_level {
        // No entry at all, and no source to name: the link it arrived on
        // is as unchecked as a level-less one.
        let (link, level) = weakest(&step.put, &incoming).unwrap_or_else(|| {
            (
                "the link it arrived on (no Route-Security entry at all)".into(),
                0,
            )
        });
        if level < min {
            step.refuse = Some(Refusal::WeakRoute { link, min });
            return step;
        }
    }
    if let Some(level) = path.link_level {
        let own = RouteEntry::new(sent_by.to_owned(), level);
        step.own_at = Some(incoming.len() + step.put.len());
        step.notes.push(format!(
            "put {} on top",
            own.to_value(path.route_security_form)
        ));
        step.put.push(own);
    }
    step
}

/// The weakest link of a request as this relay received it (what it put
/// on top for the link it arrived on, then the entries it carried, top
/// first): the first entry with the lowest level, described, and the level
/// it counts as. An entry that does not parse counts as 0.
fn weakest(
    put: &[RouteEntry],
    incoming: &[Result<RouteEntry, RouteEntryError>],
) -> Option<(String, u8)> {
    let put = put.iter().rev().map(|e| (e.describe(), e.counts_as()));
    let carried = incoming.iter().map(|e| match e {
        Ok(e) => (e.describe(), e.counts_as()),
        Err(why) => (format!("an entry that does not parse ({why})"), 0),
    });
    put.chain(carried)
        .fold(None, |low: Option<(String, u8)>, (d, l)| match low {
            Some((_, least)) if least <= l => low,
            _ => Some((d, l)),
        })
}

/// Whether this relay's own entry came back on a response, unchanged, at
/// the position it wrote it: `Ok` with the report's note, `Err` with why
/// the response is not to be trusted.
fn came_back(
    msg: &Message,
    entries: &[Result<RouteEntry, RouteEntryError>],
    sent_by: &str,
    level: u8,
) -> Result<String, String> {
    if entries.is_empty() {
        return Ok(
            "the response carries no Route-Security entries back (the far end does not copy them): nothing to check".into(),
        );
    }
    let mine = RouteEntry::new(sent_by.to_owned(), level).describe();
    let pos =
        route_security::own_position(msg).ok_or("this relay's Via (its rs-pos) cannot be read")?;
    match route_security::from_bottom(entries, pos) {
        Some(Ok(e)) if e.names(sent_by) && e.level == Some(level) => Ok(format!(
            "this relay's entry came back unchanged ({mine}, position {} from the top)",
            entries.len() - pos
        )),
        Some(Ok(e)) if e.names(sent_by) => Err(format!(
            "this relay's entry came back as {}, not {mine}: changed on the way",
            e.describe()
        )),
        Some(Ok(e)) => Err(format!(
            "the entry at this relay's position ({} from the top) is {}, not this relay's ({mine})",
            entries.len() - pos,
            e.describe()
        )),
        Some(Err(why)) => Err(format!(
            "the entry at this relay's position does not parse ({why})"
        )),
        None => Err(format!(
            "{} entries came back, too few to hold this relay's at position {} from the bottom",
            entries.len(),
            pos + 1
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(entries: &[&str]) -> Message {
        let rs: String = entries
            .iter()
            .map(|e| format!("Route-Security: {e}\r\n"))
            .collect();
        Message::parse(
            format!(
                "OPTIONS sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1\r\n{rs}Call-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn path(arrived: Option<u8>, min: Option<u8>) -> PathOptions {
        PathOptions {
            link_level: Some(2),
            received_from: Some("192.0.2.10:5060".into()),
            arrived_level: arrived,
            min_route_level: min,
            ..Default::default()
        }
    }

    fn values(step: &RouteStep) -> Vec<String> {
        step.put
            .iter()
            .map(|e| e.to_value(EntryForm::Bare))
            .collect()
    }

    #[test]
    fn a_missing_or_wrong_entry_gets_a_level_less_one_unless_the_connection_proves_more() {
        // Missing, another hop's, unparsable: level-less for the source, then mine.
        for entries in [&[][..], &["192.0.2.99;level=3"], &["<http://x>;level=3"]] {
            let step = route_security(&request(entries), "p.example.com", &path(Some(0), None));
            assert_eq!(
                values(&step),
                ["192.0.2.10:5060", "p.example.com;level=2"],
                "{entries:?}"
            );
            assert_eq!(step.own_at, Some(entries.len() + 1));
            assert!(step.refuse.is_none() && step.drop.is_none());
        }
        // Mutual TLS proves level 3: that is written instead.
        let step = route_security(&request(&[]), "p.example.com", &path(Some(3), None));
        assert_eq!(
            values(&step),
            ["192.0.2.10:5060;level=3", "p.example.com;level=2"]
        );
        // The right entry: only mine; one that claims too much is corrected.
        let good = route_security(
            &request(&["192.0.2.10:5060;level=0"]),
            "p.example.com",
            &path(Some(0), None),
        );
        assert_eq!(values(&good), ["p.example.com;level=2"]);
        assert_eq!(good.own_at, Some(1));
        let claims = route_security(
            &request(&["192.0.2.10;level=3"]),
            "p.example.com",
            &path(Some(0), None),
        );
        assert_eq!(
            values(&claims),
            ["192.0.2.10:5060;level=0", "p.example.com;level=2"]
        );
    }

    #[test]
    fn the_weakest_link_below_the_minimum_is_refused_by_name() {
        let weak = |entries: &[&str], arrived, min| {
            route_security(&request(entries), "p", &path(arrived, Some(min))).refuse
        };
        let link = |l: &str, min| {
            Some(Refusal::WeakRoute {
                link: l.into(),
                min,
            })
        };
        // The level-less entry this relay adds counts as 0.
        assert_eq!(
            weak(&[], Some(0), 1),
            link("192.0.2.10:5060 (no level: unchecked)", 1)
        );
        assert_eq!(weak(&[], Some(3), 3), None);
        // Further down the path; the first of equals from the top is named.
        assert_eq!(
            weak(
                &["192.0.2.10;level=3", "a;level=1", "b;level=1"],
                Some(3),
                2
            ),
            link("a level 1", 2)
        );
        assert_eq!(weak(&["192.0.2.10;level=3", "a;level=2"], Some(3), 2), None);
        assert!(matches!(
            weak(&["192.0.2.10;level=3", "a;level=9"], Some(3), 1),
            Some(Refusal::WeakRoute { min: 1, .. })
        ));
        let refusal = weak(&[], None, 2).unwrap();
        assert_eq!(refusal.sip_status().code(), 403);
        // Nothing carried and no source given: the link is unchecked.
        let unknown = PathOptions {
            received_from: None,
            ..path(None, Some(1))
        };
        assert_eq!(
            route_security(&request(&[]), "p", &unknown).refuse,
            link("the link it arrived on (no Route-Security entry at all)", 1)
        );
        let without_source = PathOptions {
            received_from: None,
            ..path(None, Some(0))
        };
        assert_eq!(
            route_security(&request(&[]), "p", &without_source).refuse,
            None
        );
    }

    #[test]
    fn a_response_is_dropped_when_the_entry_at_its_position_is_not_mine() {
        let response = |rs_pos: &str, entries: &[&str]| {
            let rs: String = entries
                .iter()
                .map(|e| format!("Route-Security: {e}\r\n"))
                .collect();
            Message::parse(
                format!(
                    "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP p:5060;branch=z9hG4bK2{rs_pos}\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1\r\n{rs}Call-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap()
        };
        let check = |m: &Message| route_security(m, "p:5060", &path(None, None));
        // Mine at the position my Via keeps (a level-less entry below it).
        let ok = check(&response(
            ";rs-pos=2",
            &[
                "b;level=3",
                "p:5060;level=2",
                "192.0.2.10:5060",
                "192.0.2.10:5060;level=1",
            ],
        ));
        assert!(ok.drop.is_none(), "{:?}", ok.notes);
        assert!(
            ok.notes[0].contains("position 2 from the top"),
            "{:?}",
            ok.notes
        );
        // Without the parameter: one entry per Via.
        assert!(
            check(&response("", &["b;level=3", "p;level=2", "192.0.2.10"]))
                .drop
                .is_none()
        );
        for (pos, entries, why) in [
            (
                ";rs-pos=2",
                &["b;level=3", "p:5060;level=2", "192.0.2.10"][..],
                "is b level 3, not",
            ),
            (
                "",
                &["p:5060;level=3", "192.0.2.10"],
                "came back as p:5060 level 3",
            ),
            (";rs-pos=5", &["p:5060;level=2"], "too few"),
            ("", &["x;level=2", "192.0.2.10"], "is x level 2"),
        ] {
            let step = check(&response(pos, entries));
            let dropped = step.drop.unwrap_or_default();
            assert!(dropped.contains(why), "{entries:?}: {dropped}");
        }
        // None came back (a far end that does not copy them): noted, passed.
        let none = check(&response("", &[]));
        assert!(none.drop.is_none());
        assert!(none.notes[0].contains("nothing to check"));
    }
}
