//! Steps 8 and 9 of the demo: the call of step 6 goes on under the
//! session key (200 OK with the answer, ACK, MESSAGE, rekey, MESSAGE under
//! the new key, BYE), then the whole call flow as a ladder diagram.
//!
//! Every mark in the ladder comes from what the step really did: the
//! relay's report (opened or not), or whether the user agent's open
//! succeeded.

use sipseal::context::Context;
use sipseal::relay::{Decision, RelayReport, Step};
use sipseal::sealing::SealSpec;
use sipseal::session::SessionKey;
use sipseal::sip::compose::Body;
use sipseal::sip::{Message, ResponseParams};
use sipseal::state::{MemoryStore, SessionStore};
use sipseal::ua::{DialogRequest, InDialog, Opened, ReplyTo};

use super::{
    ANSWER_SDP, Files, HELLO, Leg, Parties, hop, indent, open_as, proxy_opts, put, sent, state, ua,
    via_proxy_b,
};
use crate::error::Error;

const VIA_A: &str = "proxy-a.a.example.com:5060";
const NAMES: [&str; 4] = ["alice", "proxy-a", "proxy-b", "bob"];
const ALICE: &str = "sip:alice@a.example.com";
const BOB: &str = "sip:bob@b.example.com";
const PROXY_A: &str = "sip:proxy-a.a.example.com";

/// One arrow of the ladder: a message on one hop, and what the receiving
/// party could read of it.
struct Arrow {
    from: usize,
    to: usize,
    label: String,
    note: String,
}

/// The call in progress: the parties, the store that holds their session
/// keys and proxy-a's pinholes, and the arrows so far.
struct Flow<'a> {
    r: &'a Parties,
    store: &'a MemoryStore,
    call_id: String,
    /// proxy-a's pinhole script after its latest step.
    nft: String,
    arrows: Vec<Arrow>,
    /// Each message on each hop, for `demo --out`.
    files: Files,
}

fn demo_err(err: sipseal::ua::UaError) -> Error {
    Error::ua("the demo dialog", err)
}

/// What a relay's report says it read, for the ladder.
pub(super) fn relay_note(who: &str, msg: &Message, report: &RelayReport) -> String {
    if report.opened {
        let how = match report.decision {
            Decision::Session => "session key",
            _ => "its RecipientInfo",
        };
        // The report keeps whatever it opened; only an SDP has streams.
        let what = if report.streams.is_empty() {
            "body"
        } else {
            "SDP"
        };
        format!("{who} reads the {what} ({how})")
    } else if msg.body().is_empty() {
        String::new()
    } else {
        format!("{who}: ciphertext only")
    }
}

/// What a user agent read: the SDP or another body, and with which key.
fn ua_note(who: &str, opened: &Opened, own: &str) -> String {
    let sdp = opened
        .content
        .entity
        .as_ref()
        .and_then(|e| e.content_type())
        .is_some_and(|ct| ct.contains("application/sdp"));
    format!(
        "{who} reads the {} ({})",
        if sdp { "SDP" } else { "body" },
        if opened.by_session {
            "session key"
        } else {
            own
        }
    )
}

impl Flow<'_> {
    fn arrow(&mut self, from: usize, to: usize, label: &str, note: String) {
        self.arrows.push(Arrow {
            from,
            to,
            label: label.to_owned(),
            note,
        });
    }

    /// The session key `owner` holds now.
    fn key(&self, owner: &str) -> Option<SessionKey> {
        let sessions = self.store.load(owner).ok()?;
        sessions.find(&self.call_id).map(|e| e.key())
    }

    /// proxy-a's step: its session keys and pinholes in the store.
    fn at_proxy_a(&mut self, msg: &Message, ctx: &mut Context) -> Result<Step, Error> {
        let step = hop(
            &mut String::new(),
            msg,
            &self.r.proxy_a,
            &proxy_opts(VIA_A),
            state(self.store, true),
            ctx,
        )?;
        self.nft = step
            .pinholes
            .as_ref()
            .map(|c| c.to_nft())
            .unwrap_or_default();
        Ok(step)
    }

    fn at_proxy_b(&mut self, msg: &Message, ctx: &mut Context) -> Result<Step, Error> {
        via_proxy_b(&mut String::new(), msg, self.r, self.store, ctx)
    }

    /// What `who` reads of `msg` with its own key and its session keys.
    fn ua_open(
        &self,
        msg: &Message,
        who: &str,
        identity: &sipseal::keys::Identity,
        own: &str,
        ctx: &mut Context,
    ) -> Result<String, Error> {
        if msg.body().is_empty() {
            return Ok(String::new());
        }
        let opened = open_as(msg, identity, self.store, ctx).map_err(demo_err)?;
        Ok(ua_note(who, &opened, own))
    }

    /// alice → proxy-a → proxy-b → bob, shown as the commands that carry
    /// it: `{stem}.sip` as alice sent it, `{stem}-to-proxy-b.sip`,
    /// `{stem}-at-bob.sip`; proxy-a writes `pinholes` when given. Returns
    /// the request as bob got it.
    fn request(
        &mut self,
        out: &mut String,
        label: &str,
        stem: &str,
        msg: &Message,
        pinholes: Option<&str>,
        ctx: &mut Context,
    ) -> Result<Message, Error> {
        let nft = pinholes.map_or(String::new(), |f| format!(" --pinholes {f}"));
        out.push_str(&format!(
            "   $ sipseal proxy {stem}.sip $A{nft} > {stem}-to-proxy-b.sip\n   \
             $ sipseal proxy {stem}-to-proxy-b.sip $B > {stem}-at-bob.sip\n"
        ));
        put(&mut self.files, &format!("{stem}.sip"), msg.to_bytes());
        let a = self.at_proxy_a(msg, ctx)?;
        self.arrow(0, 1, label, relay_note("proxy-a", msg, &a.report));
        let to_b = sent(&a)?;
        put(
            &mut self.files,
            &format!("{stem}-to-proxy-b.sip"),
            to_b.to_bytes(),
        );
        let b = self.at_proxy_b(&to_b, ctx)?;
        self.arrow(1, 2, label, relay_note("proxy-b", &to_b, &b.report));
        let at_bob = sent(&b)?;
        put(
            &mut self.files,
            &format!("{stem}-at-bob.sip"),
            at_bob.to_bytes(),
        );
        let note = self.ua_open(&at_bob, "bob", &self.r.bob, "his RecipientInfo", ctx)?;
        self.arrow(2, 3, label, note);
        Ok(at_bob)
    }

    /// bob → proxy-b → proxy-a → alice, as [`Flow::request`]:
    /// `{stem}.sip`, `{stem}-to-proxy-a.sip`, `{stem}-at-alice.sip`.
    /// Returns the response as alice got it.
    fn response(
        &mut self,
        out: &mut String,
        label: &str,
        stem: &str,
        msg: &Message,
        pinholes: Option<&str>,
        ctx: &mut Context,
    ) -> Result<Message, Error> {
        let nft = pinholes.map_or(String::new(), |f| format!(" --pinholes {f}"));
        out.push_str(&format!(
            "   $ sipseal proxy {stem}.sip $B > {stem}-to-proxy-a.sip\n   \
             $ sipseal proxy {stem}-to-proxy-a.sip $A{nft} > {stem}-at-alice.sip\n"
        ));
        put(&mut self.files, &format!("{stem}.sip"), msg.to_bytes());
        let b = self.at_proxy_b(msg, ctx)?;
        self.arrow(3, 2, label, relay_note("proxy-b", msg, &b.report));
        let to_a = sent(&b)?;
        put(
            &mut self.files,
            &format!("{stem}-to-proxy-a.sip"),
            to_a.to_bytes(),
        );
        let a = self.at_proxy_a(&to_a, ctx)?;
        self.arrow(2, 1, label, relay_note("proxy-a", &to_a, &a.report));
        let at_alice = sent(&a)?;
        put(
            &mut self.files,
            &format!("{stem}-at-alice.sip"),
            at_alice.to_bytes(),
        );
        let note = self.ua_open(&at_alice, "alice", &self.r.alice, "her RecipientInfo", ctx)?;
        self.arrow(1, 0, label, note);
        Ok(at_alice)
    }

    /// bob's 200 OK (no body) to the request `{stem}-at-bob.sip`, and its
    /// way back (`{stem}-200.sip`, ...).
    fn ok(
        &mut self,
        out: &mut String,
        stem: &str,
        request: &Message,
        ctx: &mut Context,
    ) -> Result<(), Error> {
        let params = ResponseParams {
            code: 200,
            ..Default::default()
        };
        let ok = ua(self.store)
            .reply(request, ReplyTo::Response(params), Some(BOB), ctx)
            .map_err(demo_err)?;
        out.push_str(&format!(
            "   $ sipseal reply {stem}-at-bob.sip --response 200 --identity keys/bob > {stem}-200.sip\n"
        ));
        self.response(
            out,
            "200 OK",
            &format!("{stem}-200"),
            &ok.message,
            None,
            ctx,
        )?;
        Ok(())
    }

    /// An in-dialog request from alice (the UAC) built on the 200 OK she
    /// got, sealed under her session key when it has a body.
    fn alice_request(
        &self,
        ok: &Message,
        method: &str,
        body: Option<Body>,
        ctx: &mut Context,
    ) -> Result<Message, Error> {
        let request = DialogRequest {
            method: method.into(),
            body,
            ..Default::default()
        };
        let reply = ua(self.store)
            .reply(ok, ReplyTo::Request(request), Some(ALICE), ctx)
            .map_err(demo_err)?;
        if reply.message.body().is_empty() {
            return Ok(reply.message);
        }
        self.seal_in_dialog(&reply.message, ALICE, ctx)
    }

    /// `msg` sealed under the session key of `me`.
    fn seal_in_dialog(&self, msg: &Message, me: &str, ctx: &mut Context) -> Result<Message, Error> {
        match ua(self.store)
            .seal_in_dialog(msg, me, ctx)
            .map_err(demo_err)?
        {
            InDialog::Sealed(sealed) => Ok(sealed.message),
            InDialog::RekeyDue(_) => Err(Error::usage(
                "the demo's session key is used up",
                "this is a bug in the demo; please report it",
            )),
        }
    }

    /// The session reference `owner` holds, in hex.
    fn reference(&self, owner: &str) -> String {
        self.key(owner)
            .map_or("(none)".into(), |k| hex::encode(&k.reference))
    }
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

/// `$ sipseal reply 200-at-alice.sip --request-method METHOD ...`: an
/// in-dialog request of alice's, `extra` its other flags.
fn alice_reply(method: &str, extra: &str, file: &str) -> String {
    let head = format!(
        "   $ sipseal reply 200-at-alice.sip --request-method {method} --identity keys/alice"
    );
    if extra.is_empty() {
        format!("{head} > {file}\n")
    } else {
        format!("{head}{extra} \\\n       > {file}\n")
    }
}

/// The flags of a MESSAGE whose body is `hello.txt`.
const TEXT: &str = " \\\n       --body hello.txt --content-type text/plain";

/// Steps 8 and 9.
pub(super) fn run(
    out: &mut String,
    files: &mut Files,
    r: &Parties,
    store: &MemoryStore,
    spec: &SealSpec,
    leg: Leg,
    ctx: &mut Context,
) -> Result<(), Error> {
    let call_id = leg
        .to_bob
        .call_id()
        .map_err(|e| demo_err(sipseal::sealing::SealError::from(e).into()))?
        .to_owned();
    let mut flow = Flow {
        r,
        store,
        call_id,
        nft: String::new(),
        arrows: Vec::new(),
        files: Vec::new(),
    };
    out.push_str(
        "\n8. the call of step 6 goes on under the session key (docs/SPEC.md §3.2). alice, proxy-a and bob\n   \
         each derived it from the INVITE's CEK (HKDF-SHA256); nothing extra went on the wire:\n   \
         $ sipseal session list\n\n",
    );
    for (who, owner) in [("alice", ALICE), ("proxy-a", PROXY_A), ("bob", BOB)] {
        out.push_str(&format!(
            "     {who:<8} session reference {}\n",
            flow.reference(owner)
        ));
    }
    out.push_str("     proxy-b  never opened the INVITE: no session key\n");

    // The INVITE of step 6, as the ladder's first rows.
    let [to_a, to_b] = leg.invite_notes;
    flow.arrow(0, 1, "INVITE", to_a);
    flow.arrow(1, 2, "INVITE", to_b);
    let bob_read = flow.ua_open(&leg.to_bob, "bob", &r.bob, "his RecipientInfo", ctx)?;
    flow.arrow(2, 3, "INVITE", bob_read);

    // 200 OK with the answer, sealed by bob under the session key.
    let params = ResponseParams {
        code: 200,
        body: Some(Body {
            content_type: "application/sdp".into(),
            bytes: ANSWER_SDP.to_vec(),
        }),
        ..Default::default()
    };
    let plain_ok = ua(store)
        .reply(&leg.to_bob, ReplyTo::Response(params), Some(BOB), ctx)
        .map_err(demo_err)?;
    let sealed_ok = flow.seal_in_dialog(&plain_ok.message, BOB, ctx)?;
    out.push_str(
        "\n   bob answers; the 200 OK is sealed under the session key: one KEKRecipientInfo\n   \
         (kekid = the session reference), AES-256 key wrap, no RSA on either side. proxy-b\n   \
         forwards it blind; proxy-a finds the reference in its store, reads the answer and\n   \
         completes the pinholes (both sides of each stream):\n   \
         $ sipseal reply invite-at-bob.sip --response 200 --sdp samples/answer.sdp \\\n       \
         --identity keys/bob > 200.sip\n",
    );
    let ok_at_alice = flow.response(
        out,
        "200 OK",
        "200",
        &sealed_ok,
        Some("pinholes-answer.nft"),
        ctx,
    )?;
    out.push('\n');
    let complete = flow.nft.clone();
    out.push_str(&indent(&pinhole_lines(&complete, "add element")));
    put(files, "pinholes-answer.nft", complete.into_bytes());

    // ACK, MESSAGE, rekey, MESSAGE, BYE.
    out.push_str(
        "\n   alice acknowledges (no body; it follows the Record-Route of both relays):\n",
    );
    let ack = flow.alice_request(&ok_at_alice, "ACK", None, ctx)?;
    out.push_str(&alice_reply("ACK", "", "ack.sip"));
    flow.request(out, "ACK", "ack", &ack, None, ctx)?;

    out.push_str(
        "\n   a MESSAGE whose body is text (hello.txt), sealed under the session key; bob reads\n   \
         it and answers 200 OK, which goes back the same way:\n",
    );
    let m1 = flow.alice_request(&ok_at_alice, "MESSAGE", hello(), ctx)?;
    out.push_str(&alice_reply("MESSAGE", TEXT, "message-1.sip"));
    let at_bob = flow.request(out, "MESSAGE", "message-1", &m1, None, ctx)?;
    out.push_str("   $ sipseal open message-1-at-bob.sip --identity keys/bob --body-only\n");
    let opened = open_as(&at_bob, &r.bob, store, ctx).map_err(demo_err)?;
    let text = opened.content.entity.as_ref().map(|e| e.body.to_vec());
    out.push_str(&indent(&format!(
        " {}",
        String::from_utf8_lossy(text.as_deref().unwrap_or_default())
    )));
    flow.ok(out, "message-1", &at_bob, ctx)?;

    let request = DialogRequest {
        method: "MESSAGE".into(),
        body: hello(),
        ..Default::default()
    };
    let plain = ua(store)
        .reply(&ok_at_alice, ReplyTo::Request(request), Some(ALICE), ctx)
        .map_err(demo_err)?;
    let old = flow.reference(ALICE);
    let rekeyed = ua(store)
        .rekey(&plain.message, ALICE, spec, ctx)
        .map_err(demo_err)?
        .sealed;
    out.push_str(
        "\n   key update: the next MESSAGE goes as a full envelope again, for --peer and --disclose,\n   \
         under a new key. `reply` does so by itself once it has sealed --max-uses messages\n   \
         under the key (default 100; 1 here); `sipseal rekey FILE` does it for a message of\n   \
         your own. Everyone who opens it replaces the key (the old one still opens messages\n   \
         in flight for 32 s):\n",
    );
    out.push_str(&alice_reply(
        "MESSAGE",
        &format!(
            "{TEXT} \\\n       --max-uses 1 --peer keys/bob/cert.pem --disclose keys/proxy-a/cert.pem"
        ),
        "rekey.sip",
    ));
    let at_bob = flow.request(out, "MESSAGE rekey", "rekey", &rekeyed.message, None, ctx)?;
    out.push_str("   $ sipseal open rekey-at-bob.sip --identity keys/bob --body-only\n");
    flow.ok(out, "rekey", &at_bob, ctx)?;
    out.push_str(&format!(
        "     session reference {old} -> {}\n     proxy-a now holds {}, bob {}\n",
        flow.reference(ALICE),
        flow.reference(PROXY_A),
        flow.reference(BOB),
    ));

    out.push_str("\n   the next MESSAGE, under the new key:\n");
    let m2 = flow.alice_request(&ok_at_alice, "MESSAGE", hello(), ctx)?;
    out.push_str(&alice_reply("MESSAGE", TEXT, "message-2.sip"));
    let at_bob = flow.request(out, "MESSAGE", "message-2", &m2, None, ctx)?;
    flow.ok(out, "message-2", &at_bob, ctx)?;

    out.push_str(
        "\n   alice hangs up; proxy-a sees the BYE (it record-routed) and closes the pinholes:\n",
    );
    let bye = flow.alice_request(&ok_at_alice, "BYE", None, ctx)?;
    out.push_str(&alice_reply("BYE", "", "bye.sip"));
    let at_bob = flow.request(out, "BYE", "bye", &bye, Some("pinholes-bye.nft"), ctx)?;
    let closing = flow.nft.clone();
    out.push('\n');
    out.push_str(&indent(&pinhole_lines(&closing, "delete element")));
    put(files, "pinholes-bye.nft", closing.into_bytes());
    out.push('\n');
    flow.ok(out, "bye", &at_bob, ctx)?;
    files.append(&mut flow.files);

    out.push_str(
        "\n9. the call flow. Each arrow is one hop of one message; on the right, what the party\n   \
         receiving it could read of the message's body (every relay forwards the sealed body\n   \
         byte for byte):\n\n",
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
