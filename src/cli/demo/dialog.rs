//! Steps 8 and 9 of the demo: the call of step 6 goes on under the
//! session key (200 OK with the answer, ACK, MESSAGE, rekey, MESSAGE under
//! the new key, BYE), then the whole call flow as a ladder diagram.
//!
//! Every mark in the ladder comes from what the step really did: the
//! relay's report (opened or not), or whether the user agent's open
//! succeeded.

use super::{ANSWER_SDP, Hopped, Leg, Relays, hop_with, indent};
use crate::context::Context;
use crate::envelope::{Cek, RecipientKey};
use crate::keys::Identity;
use crate::pinhole::{CallState, Seen};
use crate::relay::{Decision, RelayReport};
use crate::sealing::{
    OpenedContent, SealError, SealSpec, SealedInput, open_input, seal_message, seal_session,
};
use crate::session::SessionKey;
use crate::sip::compose::{DialogParams, build_in_dialog};
use crate::sip::{Body, Message, ResponseParams, build_response};

use super::super::error::Error;

const VIA_A: &str = "proxy-a.a.example.com:5060";
const VIA_B: &str = "proxy-b.b.example.com";
const NAMES: [&str; 4] = ["alice", "proxy-a", "proxy-b", "bob"];
const HELLO: &[u8] = b"hello bob, this text is sealed under the session key\r\n";

/// One arrow of the ladder: a message on one hop, and what the receiving
/// party could read of it.
struct Arrow {
    from: usize,
    to: usize,
    label: String,
    note: String,
}

/// The call in progress: each party's session key, proxy-a's pinholes,
/// and the arrows so far.
struct Flow<'a> {
    r: &'a Relays<'a>,
    alice: SessionKey,
    proxy_a: Option<SessionKey>,
    bob: Option<SessionKey>,
    call: CallState,
    /// proxy-a's pinhole script after its latest step.
    nft: String,
    arrows: Vec<Arrow>,
}

fn seal_err(err: SealError) -> Error {
    Error::Seal {
        name: "the demo dialog".into(),
        err,
    }
}

/// What a relay's report says it read, for the ladder.
pub(super) fn relay_note(who: &str, msg: &Message, report: &RelayReport) -> String {
    if report.opened {
        let how = match report.decision {
            Decision::Session => "session key",
            _ => "its RecipientInfo",
        };
        let what = if report.sdp.is_some() { "SDP" } else { "body" };
        format!("{who} reads the {what} ({how})")
    } else if msg.body().is_empty() {
        String::new()
    } else {
        format!("{who}: ciphertext only")
    }
}

/// What a user agent read: the SDP or another body, and with which key.
fn ua_note(who: &str, opened: &OpenedContent, by_session: bool, own: &str) -> String {
    let sdp = opened
        .entity
        .as_ref()
        .and_then(|e| e.content_type())
        .is_some_and(|ct| ct.contains("application/sdp"));
    format!(
        "{who} reads the {} ({})",
        if sdp { "SDP" } else { "body" },
        if by_session { "session key" } else { own }
    )
}

impl Flow<'_> {
    /// A user agent opens with its session key first, then its RSA key.
    fn ua_open(
        msg: &Message,
        identity: &Identity,
        key: Option<&SessionKey>,
        ctx: &mut Context,
    ) -> Result<(OpenedContent, bool), SealError> {
        let mut keys: Vec<RecipientKey<'_>> = key.iter().map(|k| k.recipient_key()).collect();
        let sessions = keys.len();
        keys.push(RecipientKey::Rsa {
            cert: &identity.cert,
            key: identity,
        });
        let opened = open_input(SealedInput::Sip(msg.clone()), &keys, ctx.rng())?;
        let by_session = opened.key_index < sessions;
        Ok((opened, by_session))
    }

    fn arrow(&mut self, from: usize, to: usize, label: &str, note: String) {
        self.arrows.push(Arrow {
            from,
            to,
            label: label.to_owned(),
            note,
        });
    }

    /// proxy-a's step: its session key, its pinholes; a full envelope it
    /// opens gives it a new session key.
    fn at_proxy_a(&mut self, msg: &Message, ctx: &mut Context) -> Result<Hopped, Error> {
        let sessions: Vec<SessionKey> = self.proxy_a.iter().cloned().collect();
        let h = hop_with(
            &mut String::new(),
            msg,
            self.r.proxy_a,
            VIA_A,
            &sessions,
            ctx,
        )?;
        if let (Some(cek), Ok(call_id)) = (&h.cek, msg.call_id()) {
            self.proxy_a = Some(SessionKey::derive(call_id, cek));
        }
        let seen = match (h.forwarded, h.report.sdp.as_deref()) {
            (true, sdp) => Seen::of(&h.msg, sdp),
            (false, _) => Seen::of(&h.msg, None),
        };
        self.nft = self.call.step(&seen).to_nft();
        Ok(h)
    }

    fn at_proxy_b(&mut self, msg: &Message, ctx: &mut Context) -> Result<Hopped, Error> {
        hop_with(&mut String::new(), msg, self.r.proxy_b, VIA_B, &[], ctx)
    }

    /// alice → proxy-a → proxy-b → bob; returns the request as bob got it.
    fn request(&mut self, label: &str, msg: &Message, ctx: &mut Context) -> Result<Message, Error> {
        let a = self.at_proxy_a(msg, ctx)?;
        self.arrow(0, 1, label, relay_note("proxy-a", msg, &a.report));
        let b = self.at_proxy_b(&a.msg, ctx)?;
        self.arrow(1, 2, label, relay_note("proxy-b", &a.msg, &b.report));
        let note = if b.msg.body().is_empty() {
            String::new()
        } else {
            let (opened, by_session) =
                Self::ua_open(&b.msg, self.r.bob, self.bob.as_ref(), ctx).map_err(seal_err)?;
            if !by_session && let Ok(call_id) = b.msg.call_id() {
                self.bob = Some(SessionKey::derive(call_id, &opened.cek));
            }
            ua_note("bob", &opened, by_session, "his RecipientInfo")
        };
        self.arrow(2, 3, label, note);
        Ok(b.msg)
    }

    /// bob → proxy-b → proxy-a → alice; returns the response as alice got it.
    fn response(
        &mut self,
        label: &str,
        msg: &Message,
        ctx: &mut Context,
    ) -> Result<Message, Error> {
        let b = self.at_proxy_b(msg, ctx)?;
        self.arrow(3, 2, label, relay_note("proxy-b", msg, &b.report));
        let a = self.at_proxy_a(&b.msg, ctx)?;
        self.arrow(2, 1, label, relay_note("proxy-a", &b.msg, &a.report));
        let note = if a.msg.body().is_empty() {
            String::new()
        } else {
            let (opened, by_session) =
                Self::ua_open(&a.msg, self.r.alice, Some(&self.alice), ctx).map_err(seal_err)?;
            ua_note("alice", &opened, by_session, "her RecipientInfo")
        };
        self.arrow(1, 0, label, note);
        Ok(a.msg)
    }

    /// bob's 200 OK (no body) to a request that reached him.
    fn ok(&mut self, request: &Message, ctx: &mut Context) -> Result<(), Error> {
        let params = ResponseParams {
            code: 200,
            ..Default::default()
        };
        let ok = build_response(request, &params, ctx)?;
        self.response("200 OK", &ok, ctx)?;
        Ok(())
    }
}

/// An in-dialog request from alice (the UAC) built on the 200 OK she got.
fn alice_request(
    ok: &Message,
    method: &str,
    cseq: u32,
    body: Option<Body>,
    ctx: &mut Context,
) -> Result<Message, Error> {
    let p = DialogParams {
        method: method.into(),
        local_is_from: true,
        cseq,
        body,
        ..Default::default()
    };
    Ok(build_in_dialog(ok, &p, ctx)?)
}

fn hello() -> Option<Body> {
    Some(Body {
        content_type: "text/plain".into(),
        bytes: HELLO.to_vec(),
    })
}

fn pinhole_lines(nft: &str, prefix: &str) -> String {
    nft.lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Steps 8 and 9.
pub(super) fn run(
    out: &mut String,
    files: &mut Vec<(&str, Vec<u8>)>,
    r: &Relays<'_>,
    spec: &SealSpec,
    alice_cek: &Cek,
    leg: Leg,
    ctx: &mut Context,
) -> Result<(), Error> {
    let call_id = leg
        .to_bob
        .call_id()
        .map_err(|e| seal_err(e.into()))?
        .to_owned();
    let alice = SessionKey::derive(&call_id, alice_cek);
    let proxy_a = leg
        .proxy_a_cek
        .as_ref()
        .map(|c| SessionKey::derive(&call_id, c));
    let (bob_opened, _) = Flow::ua_open(&leg.to_bob, r.bob, None, ctx).map_err(seal_err)?;
    let bob = SessionKey::derive(&call_id, &bob_opened.cek);
    out.push_str(
        "\n8. the call of step 6 goes on under the session key (SPEC 3.2). alice, proxy-a and bob\n   \
         each derived it from the INVITE's CEK (HKDF-SHA256); nothing extra went on the wire:\n   \
         $ sipseal session list --state state\n\n",
    );
    for (who, k) in [
        ("alice", Some(&alice)),
        ("proxy-a", proxy_a.as_ref()),
        ("bob", Some(&bob)),
    ] {
        out.push_str(&format!(
            "     {who:<8} session reference {}\n",
            k.map_or("(none)".into(), |k| hex::encode(&k.reference))
        ));
    }
    out.push_str("     proxy-b  never opened the INVITE: no session key\n");

    let mut flow = Flow {
        r,
        alice,
        proxy_a,
        bob: Some(bob),
        call: leg.call,
        nft: String::new(),
        arrows: Vec::new(),
    };
    // The INVITE of step 6, as the ladder's first rows.
    let [to_a, to_b] = leg.invite_notes;
    flow.arrow(0, 1, "INVITE", to_a);
    flow.arrow(1, 2, "INVITE", to_b);
    flow.arrow(
        2,
        3,
        "INVITE",
        ua_note("bob", &bob_opened, false, "his RecipientInfo"),
    );

    // 200 OK with the answer, sealed by bob under the session key.
    let params = ResponseParams {
        code: 200,
        body: Some(Body {
            content_type: "application/sdp".into(),
            bytes: ANSWER_SDP.to_vec(),
        }),
        ..Default::default()
    };
    let plain_ok = build_response(&leg.to_bob, &params, ctx)?;
    let bob_key = flow.bob.clone().unwrap_or_else(|| flow.alice.clone());
    let sealed_ok = seal_session(&plain_ok, &bob_key, ctx).map_err(seal_err)?;
    files.push(("200.sip", sealed_ok.message.to_bytes()));
    out.push_str(
        "\n   bob answers; the 200 OK is sealed under the session key: one KEKRecipientInfo\n   \
         (kekid = the session reference), AES-256 key wrap, no RSA on either side:\n   \
         $ sipseal reply to-bob.sip --response 200 --sdp samples/answer.sdp --identity keys/bob > 200.sip\n",
    );
    let ok_at_alice = flow.response("200 OK", &sealed_ok.message, ctx)?;
    out.push_str(
        "   proxy-b forwards it blind; proxy-a finds the reference in its store, reads the answer\n   \
         and completes the pinholes (both sides of each stream):\n\n",
    );
    let complete = flow.nft.clone();
    out.push_str(&indent(&pinhole_lines(&complete, "add element")));
    files.push(("pinholes-answer.nft", complete.into_bytes()));

    // ACK, MESSAGE, rekey, MESSAGE, BYE.
    let ack = alice_request(&ok_at_alice, "ACK", 1, None, ctx)?;
    files.push(("ack.sip", ack.to_bytes()));
    out.push_str(
        "\n   $ sipseal reply 200-at-alice.sip --request-method ACK --identity keys/alice > ack.sip\n   \
         (no body; it follows the Record-Route of both relays)\n",
    );
    flow.request("ACK", &ack, ctx)?;

    let plain = alice_request(&ok_at_alice, "MESSAGE", 2, hello(), ctx)?;
    let m1 = seal_session(&plain, &flow.alice, ctx).map_err(seal_err)?;
    files.push(("message-1.sip", m1.message.to_bytes()));
    out.push_str(
        "\n   $ sipseal reply 200-at-alice.sip --request-method MESSAGE --body hello.txt \\\n       --content-type text/plain --identity keys/alice > message-1.sip\n",
    );
    let at_bob = flow.request("MESSAGE", &m1.message, ctx)?;
    flow.ok(&at_bob, ctx)?;

    let plain = alice_request(&ok_at_alice, "MESSAGE", 3, hello(), ctx)?;
    let rekeyed = seal_message(&plain, spec, ctx).map_err(seal_err)?;
    let old = hex::encode(&flow.alice.reference);
    flow.alice = SessionKey::derive(&call_id, &rekeyed.cek);
    files.push(("rekey.sip", rekeyed.message.to_bytes()));
    out.push_str(
        "\n   key update: alice sends a full envelope again; everyone who opens it replaces the key\n   \
         (the old one still opens messages in flight for 32 s):\n   \
         $ sipseal rekey message.sip --peer keys/bob/cert.pem --disclose keys/proxy-a/cert.pem > rekey.sip\n",
    );
    let at_bob = flow.request("MESSAGE rekey", &rekeyed.message, ctx)?;
    flow.ok(&at_bob, ctx)?;
    out.push_str(&format!(
        "     session reference {old} -> {}\n     proxy-a now holds {}, bob {}\n",
        hex::encode(&flow.alice.reference),
        flow.proxy_a
            .as_ref()
            .map_or("(none)".into(), |k| hex::encode(&k.reference)),
        flow.bob
            .as_ref()
            .map_or("(none)".into(), |k| hex::encode(&k.reference)),
    ));

    let plain = alice_request(&ok_at_alice, "MESSAGE", 4, hello(), ctx)?;
    let m2 = seal_session(&plain, &flow.alice, ctx).map_err(seal_err)?;
    files.push(("message-2.sip", m2.message.to_bytes()));
    out.push_str("\n   $ sipseal reply ... --request-method MESSAGE ... > message-2.sip   # under the new key\n");
    let at_bob = flow.request("MESSAGE", &m2.message, ctx)?;
    flow.ok(&at_bob, ctx)?;

    let bye = alice_request(&ok_at_alice, "BYE", 5, None, ctx)?;
    files.push(("bye.sip", bye.to_bytes()));
    out.push_str(
        "\n   $ sipseal reply 200-at-alice.sip --request-method BYE --identity keys/alice > bye.sip\n   \
         proxy-a sees the BYE (it record-routed) and closes the pinholes:\n\n",
    );
    let at_bob = flow.request("BYE", &bye, ctx)?;
    let closing = flow.nft.clone();
    out.push_str(&indent(&pinhole_lines(&closing, "delete element")));
    files.push(("pinholes-bye.nft", closing.into_bytes()));
    flow.ok(&at_bob, ctx)?;

    out.push_str(
        "\n9. the call flow. Each arrow is one hop of one message; on the right, what the party\n   \
         receiving it could read (every relay forwards the sealed body byte for byte):\n\n",
    );
    out.push_str(&ladder(&flow.arrows));
    out.push_str("   (no note: the message has no body)\n");
    Ok(())
}

/// The ladder diagram: one column per party, one arrow per hop.
fn ladder(arrows: &[Arrow]) -> String {
    const WIDTH: usize = 18;
    const LEFT: usize = 8;
    let col = |i: usize| LEFT + i * WIDTH;
    let width = col(NAMES.len() - 1) + 1;
    let mut out = String::new();
    let mut head = vec![b' '; width + 8];
    for (i, n) in NAMES.iter().enumerate() {
        let start = col(i).saturating_sub(n.len() / 2);
        head[start..start + n.len()].copy_from_slice(n.as_bytes());
    }
    out.push_str(String::from_utf8_lossy(&head).trim_end());
    out.push('\n');
    let bars = || {
        let mut line = vec![b' '; width];
        for i in 0..NAMES.len() {
            line[col(i)] = b'|';
        }
        line
    };
    out.push_str(String::from_utf8_lossy(&bars()).trim_end());
    out.push('\n');
    for a in arrows {
        let mut line = bars();
        let (lo, hi) = (col(a.from.min(a.to)), col(a.from.max(a.to)));
        for c in &mut line[lo + 1..hi] {
            *c = b'-';
        }
        if a.to > a.from {
            line[hi - 1] = b'>';
        } else {
            line[lo + 1] = b'<';
        }
        let label = format!(" {} ", a.label);
        let room = hi - lo - 3;
        if label.len() <= room {
            let at = lo + 2 + (room - label.len()) / 2;
            line[at..at + label.len()].copy_from_slice(label.as_bytes());
        }
        let mut text = String::from_utf8_lossy(&line).into_owned();
        if !a.note.is_empty() {
            text.push_str("  ");
            text.push_str(&a.note);
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out.push_str(String::from_utf8_lossy(&bars()).trim_end());
    out.push('\n');
    out
}
