//! `sipseal demo`: the flow on the bundled samples, printing what each step
//! does and what each party sees.

use std::path::{Path, PathBuf};

use clap::Args;
use sipseal::context::Context;
use sipseal::envelope::{Recipient, RecipientKey};
use sipseal::inspect::{Known, inspect, inspect_with};
use sipseal::keys::{Cert, Identity};
use sipseal::policy::Bindings;
use sipseal::relay::{
    Mode, Outcome, ProxyOptions, RelayKeys, RelayOptions, RelayState, Step, relay,
};
use sipseal::sealing::{SealSpec, SealedInput};
use sipseal::sip::{Body, Message, RequestParams, build_request};
use sipseal::state::{MemoryStore, PinholeStore};
use sipseal::ua::{Opened, Ua, UaError, trusted_relay_cert};

use crate::error::{Error, Exit};
use crate::io::{write_file, write_output};

mod dialog;
mod registration;
mod signed;

/// The sample offer, built in so the demo runs from any directory.
pub const OFFER_SDP: &[u8] =
    include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/offer.sdp"));
/// The audio-only sample offer (one m=audio, one a=crypto).
pub const OFFER_AUDIO_SDP: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/samples/offer-audio.sdp"
));
/// The sample answer.
pub const ANSWER_SDP: &[u8] =
    include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/answer.sdp"));

/// The text alice sends in the dialog's MESSAGEs (`hello.txt`).
pub const HELLO: &[u8] = b"hello bob, this text is sealed under the session key\r\n";
/// The password of alice's registration (`pw`).
pub const PASSWORD: &str = "demo-password";

/// The files `demo --out` writes: each message on each hop under a name of
/// its own, and every input a shown command reads.
pub(crate) type Files = Vec<(String, Vec<u8>)>;

/// Keep `bytes` as the file `name`.
pub(crate) fn put(files: &mut Files, name: &str, bytes: Vec<u8>) {
    debug_assert!(files.iter().all(|(n, _)| n != name), "{name} written twice");
    files.push((name.to_owned(), bytes));
}

/// `demo` arguments.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Also write each message of the flow, and every file the commands
    /// shown read, into this directory: the commands replay there.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The demo PKI (default: ./keys when present, else the repository's keys/).
    #[arg(long, value_name = "DIR")]
    pub keys: Option<PathBuf>,
}

fn keys_dir(arg: Option<&PathBuf>) -> PathBuf {
    match arg {
        Some(d) => d.clone(),
        None if Path::new("keys/bob/cert.pem").is_file() => PathBuf::from("keys"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("keys"),
    }
}

/// The header section of a sealed message, with the binary body summarised.
fn headers_only(bytes: &[u8]) -> String {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(bytes.len(), |i| i + 4);
    format!(
        "{}<{} bytes of DER: CMS AuthEnvelopedData>\n",
        String::from_utf8_lossy(&bytes[..end]),
        bytes.len() - end
    )
}

/// A user agent of the demo, keeping its session keys in `store`.
fn ua(store: &MemoryStore) -> Ua<'_> {
    Ua {
        store,
        limits: Default::default(),
    }
}

/// `sipseal open --identity <who>`: the key of `identity` (and the session
/// keys it stored in `store`).
fn open_as(
    msg: &Message,
    identity: &Identity,
    store: &MemoryStore,
    ctx: &mut Context,
) -> Result<Opened, UaError> {
    let keys = [RecipientKey::Cert {
        cert: &identity.cert,
        key: identity,
    }];
    ua(store).open(SealedInput::Sip(msg.clone()), &keys, None, ctx)
}

/// What a party sees when it opens (or fails to open) the sealed INVITE.
fn view(
    sealed: &Message,
    who: &str,
    identity: &Identity,
    store: &MemoryStore,
    ctx: &mut Context,
    same_as: &[u8],
) -> String {
    match open_as(sealed, identity, store, ctx) {
        Ok(opened) => {
            let mut v = String::new();
            if let Some(msg) = &opened.content.message {
                let bytes = msg.to_bytes();
                if bytes == same_as {
                    v.push_str(&format!(
                        "{who} opens it (exit 0): alice's INVITE comes back byte for byte.\n"
                    ));
                } else {
                    v.push_str(&format!("{who} opens it (exit 0).\n"));
                }
                let report = inspect(msg);
                if let Some(sdp) = report.body.as_ref().and_then(|b| b.sdp.as_ref()) {
                    v.push_str(&format!(
                        "{who} reads the SDP: connection {}\n",
                        sdp.connection_addresses.join(", ")
                    ));
                    for m in &sdp.media {
                        v.push_str(&format!(
                            "  {} {}:{} {}{}{}\n",
                            m.media,
                            m.address.as_deref().unwrap_or("-"),
                            m.port,
                            m.protocol,
                            if m.rtcp_mux { ", rtcp-mux" } else { "" },
                            if m.crypto_suites.is_empty() {
                                String::new()
                            } else {
                                format!(", SRTP keys ({})", m.crypto_suites.join(" "))
                            }
                        ));
                    }
                }
            }
            v
        }
        Err(e) => format!(
            "{who} cannot open it (exit {}): {e}\n  {who} sees only ciphertext; its private key was never used.\n",
            Exit::from(e.class()) as u8
        ),
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_owned()
            } else {
                format!("    {l}\n")
            }
        })
        .collect()
}

/// Run `demo`.
pub fn run(args: DemoArgs, ctx: &mut Context) -> Result<Exit, Error> {
    let mut out = String::new();
    out.push_str("sipseal demo: selective disclosure of SIP bodies to chosen relays\n\n");
    out.push_str(
        "Every command shown replays by hand: `sipseal demo --out DIR` writes each message\n\
         (every hop of it, under a name of its own) and every file the commands read\n\
         (samples/, hello.txt, pw, and keys/ linked to the demo PKI). Then:\n   \
         $ cd DIR\n   \
         $ export SIPSEAL_STATE=$PWD/state   # one state directory for every party\n",
    );
    out.push_str(SET_FLAGS);
    out.push('\n');

    let invite = alice_invite(OFFER_SDP, ctx)?;
    let bytes = invite.to_bytes();
    out.push_str(
        "1. alice builds an INVITE to bob with the sample offer (audio + video, SRTP keys):\n",
    );
    out.push_str(
        "   $ sipseal build invite --from sip:alice@a.example.com --to sip:bob@b.example.com \\\n",
    );
    out.push_str("       --via a.example.com:5060 --sdp samples/offer.sdp > invite.sip\n\n");
    out.push_str(&indent(&String::from_utf8_lossy(&bytes)));

    let report = inspect(&invite);
    out.push_str(
        "\n2. anyone on the path inspects it, no key needed:\n   $ sipseal inspect invite.sip\n\n",
    );
    out.push_str(&indent(&report.to_text()));

    let dir = keys_dir(args.keys.as_ref());
    let load = |who: &str| Identity::load_dir(&dir.join(who));
    let parties = Parties {
        alice: load("alice")?,
        proxy_a: load("proxy-a")?,
        proxy_b: load("proxy-b")?,
        bob: load("bob")?,
        anchors: Cert::load_all(&dir.join("trust.pem"))?,
    };
    // What each party keeps between messages, as one --state directory
    // shared by all of them would.
    let store = MemoryStore::new();

    let spec = SealSpec {
        peers: vec![Recipient::Cert(Box::new(parties.bob.cert.clone()))],
        disclose: vec![Recipient::Cert(Box::new(parties.proxy_a.cert.clone()))],
        ..Default::default()
    };
    let sealed = ua(&store)
        .seal(&invite, &spec, ctx)
        .map_err(|err| Error::ua("the demo INVITE", err))?
        .sealed;
    let sealed_bytes = sealed.message.to_bytes();
    out.push_str(
        "\n3. alice seals the SDP for bob and discloses it to her outbound proxy, proxy-a\n   \
         (AuthEnvelopedData, AES-256-GCM, one RSA-OAEP RecipientInfo each), not to proxy-b:\n   \
         $ sipseal seal invite.sip --peer keys/bob/cert.pem --disclose keys/proxy-a/cert.pem > sealed.sip\n\n",
    );
    out.push_str(&indent(&headers_only(&sealed_bytes)));

    let certs: Vec<Cert> = Cert::load_tree(&dir)?;
    let known = Known {
        certs: certs.iter().collect(),
        ..Default::default()
    };
    let report = inspect_with(&sealed.message, &known, ctx.rng());
    out.push_str(
        "\n4. anyone inspects it without a key; certificates name the recipients:\n   \
         $ sipseal inspect sealed.sip --certs keys\n\n",
    );
    let text = report.to_text();
    let from = text.find("  part:").unwrap_or(0);
    out.push_str(&indent(&text[from..]));

    out.push_str("\n5. what each party sees:\n\n");
    for (who, identity) in [
        ("proxy-a", &parties.proxy_a),
        ("proxy-b", &parties.proxy_b),
        ("bob", &parties.bob),
    ] {
        out.push_str(&format!(
            "{}   $ sipseal open sealed.sip --identity keys/{who}{}\n",
            if who == "proxy-a" { "" } else { "\n" },
            if who == "proxy-b" { "   # exit 3" } else { "" }
        ));
        let seen = view(&sealed.message, who, identity, &store, ctx, &bytes);
        out.push_str(&indent(&seen));
    }

    let mut files: Files = Vec::new();
    put(&mut files, "invite.sip", bytes.clone());
    put(&mut files, "sealed.sip", sealed_bytes.clone());
    let leg = relay_path(&mut out, &mut files, &parties, &store, &sealed.message, ctx)?;
    designation_without_key(&mut out, &mut files, &parties, &invite, &spec, ctx)?;
    dialog::run(&mut out, &mut files, &parties, &store, &spec, leg, ctx)?;
    signed::run(&mut out, &mut files, &parties, ctx)?;
    let audio = one_datagram(&mut out, &mut files, &dir, ctx)?;
    registration::run(&mut out, &mut files, &dir, &audio, ctx)?;

    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).map_err(|source| Error::Write {
            name: dir.display().to_string(),
            source,
        })?;
        put(&mut files, "samples/offer.sdp", OFFER_SDP.to_vec());
        put(
            &mut files,
            "samples/offer-audio.sdp",
            OFFER_AUDIO_SDP.to_vec(),
        );
        put(&mut files, "samples/answer.sdp", ANSWER_SDP.to_vec());
        put(&mut files, "hello.txt", HELLO.to_vec());
        put(&mut files, "pw", format!("{PASSWORD}\n").into_bytes());
        for (name, data) in &files {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| Error::Write {
                    name: parent.display().to_string(),
                    source,
                })?;
            }
            // Some hold plaintext or SRTP keys (opened bodies, reports).
            write_file(&path, data, true)?;
            out.push_str(&format!("\nwrote {}", path.display()));
        }
        if let Some(linked) = link_keys(dir, &keys_dir(args.keys.as_ref()))? {
            out.push_str(&format!("\nlinked {}", linked));
        }
        out.push('\n');
    }
    write_output(None, out.as_bytes())?;
    Ok(Exit::Ok)
}

/// `DIR/keys` as a link to the demo PKI, so the commands replay in DIR
/// as shown (unless DIR has a keys/ of its own).
fn link_keys(dir: &Path, keys: &Path) -> Result<Option<String>, Error> {
    let link = dir.join("keys");
    if link.symlink_metadata().is_ok() {
        return Ok(None);
    }
    let target = std::fs::canonicalize(keys).map_err(|source| Error::Write {
        name: keys.display().to_string(),
        source,
    })?;
    #[cfg(unix)]
    std::os::unix::fs::symlink(&target, &link).map_err(|source| Error::Write {
        name: link.display().to_string(),
        source,
    })?;
    #[cfg(not(unix))]
    return Ok(Some(format!(
        "nothing: copy {} to {} to replay the commands",
        target.display(),
        link.display()
    )));
    #[cfg(unix)]
    Ok(Some(format!("{} -> {}", link.display(), target.display())))
}

/// alice's INVITE to bob with `sdp`, as `sipseal build invite --from
/// sip:alice@a.example.com --to sip:bob@b.example.com --via a.example.com:5060`.
fn alice_invite(sdp: &[u8], ctx: &mut Context) -> Result<Message, Error> {
    let params = RequestParams {
        method: "INVITE".into(),
        from: "sip:alice@a.example.com".into(),
        to: "sip:bob@b.example.com".into(),
        via: Some("a.example.com:5060".into()),
        body: Some(Body {
            content_type: "application/sdp".into(),
            bytes: sdp.to_vec(),
        }),
        ..Default::default()
    };
    Ok(build_request(&params, ctx)?)
}

/// An audio-only INVITE sealed with EC P-256 keys for bob and proxy-a fits
/// one UDP datagram (RFC 3261 §18.1.1); with RSA-2048 keys it does not.
/// Returns the INVITE (`invite-audio.sip`), which registration seals again.
fn one_datagram(
    out: &mut String,
    files: &mut Files,
    dir: &std::path::Path,
    ctx: &mut Context,
) -> Result<Message, Error> {
    use sipseal::sip::size::{UDP_LIMIT, udp_size_warning};
    let invite = alice_invite(OFFER_AUDIO_SDP, ctx)?;
    let invite_bytes = invite.to_bytes();
    let load = |who: &str| Identity::load_dir(&dir.join(who));
    let (bob_ec, proxy_a_ec) = (load("bob-ec")?, load("proxy-a-ec")?);
    let (bob, proxy_a) = (load("bob")?, load("proxy-a")?);
    let store = MemoryStore::new();
    let seal = |peer: &Identity, relay: &Identity, ctx: &mut Context| {
        let spec = SealSpec {
            peers: vec![Recipient::Cert(Box::new(peer.cert.clone()))],
            disclose: vec![Recipient::Cert(Box::new(relay.cert.clone()))],
            ..Default::default()
        };
        ua(&store)
            .seal(&invite, &spec, ctx)
            .map_err(|err| Error::ua("the audio-only INVITE", err))
            .map(|s| s.sealed.message)
    };
    // Whether `id` opens `sealed` and gets the INVITE back byte for byte.
    let opens = |sealed: &Message, id: &Identity, ctx: &mut Context| {
        let ring = [RecipientKey::Cert {
            cert: &id.cert,
            key: id,
        }];
        ua(&store)
            .open(SealedInput::Sip(sealed.clone()), &ring, None, ctx)
            .map(|o| o.content.message.map(|m| m.to_bytes()) == Some(invite_bytes.clone()))
    };
    let said = |same: bool| {
        if same {
            ": the INVITE comes back byte for byte"
        } else {
            ""
        }
    };
    put(files, "invite-audio.sip", invite_bytes.clone());
    out.push_str(&format!(
        "\nOne datagram: an audio-only INVITE (samples/offer-audio.sdp, {} bytes of SDP)\n   \
         $ sipseal build invite --from sip:alice@a.example.com --to sip:bob@b.example.com \\\n       \
         --via a.example.com:5060 --sdp samples/offer-audio.sdp > invite-audio.sip\n",
        OFFER_AUDIO_SDP.len()
    ));

    let ec = seal(&bob_ec, &proxy_a_ec, ctx)?;
    let ec_len = ec.to_bytes().len();
    put(files, "sealed-audio-ec.sip", ec.to_bytes());
    out.push_str(&format!(
        "sealed for bob and proxy-a with their EC P-256 keys (one KeyAgreeRecipientInfo, one\n\
         ephemeral key) is {ec_len} bytes: within the {UDP_LIMIT} RFC 3261 §18.1.1 allows on UDP.\n   \
         $ sipseal seal invite-audio.sip --peer keys/bob-ec/cert.pem --disclose keys/proxy-a-ec/cert.pem \\\n       \
         > sealed-audio-ec.sip\n"
    ));
    for (who, id) in [("bob-ec", &bob_ec), ("proxy-a-ec", &proxy_a_ec)] {
        let same = opens(&ec, id, ctx).map_err(|err| Error::ua("the EC-sealed INVITE", err))?;
        out.push_str(&format!(
            "   $ sipseal open sealed-audio-ec.sip --identity keys/{who}\n     \
             {who} opens it (exit 0){}\n",
            said(same)
        ));
    }

    let rsa = seal(&bob, &proxy_a, ctx)?;
    out.push_str(&format!(
        "With their RSA-2048 keys it is {} bytes, and seal warns:\n   \
         $ sipseal seal invite-audio.sip --peer keys/bob/cert.pem --disclose keys/proxy-a/cert.pem \\\n       \
         > sealed-audio-rsa.sip\n",
        rsa.to_bytes().len()
    ));
    if let Some(w) = udp_size_warning(&rsa) {
        out.push_str(&format!("     warning: {w}\n"));
    }
    put(files, "sealed-audio-rsa.sip", rsa.to_bytes());
    // Post-quantum: the same INVITE for their ML-KEM-768 identities (a PKI
    // from an older `keys demo` has none: the step is left out).
    if let (Ok(bob_pq), Ok(proxy_a_pq)) = (load("bob-mlkem"), load("proxy-a-mlkem")) {
        let pq = seal(&bob_pq, &proxy_a_pq, ctx)?;
        let same =
            opens(&pq, &bob_pq, ctx).map_err(|err| Error::ua("the ML-KEM-sealed INVITE", err))?;
        out.push_str(&format!(
            "Post-quantum (ML-KEM-768, KEMRecipientInfo, RFC 9629/9936) for bob and proxy-a:\n   \
             $ sipseal seal invite-audio.sip --peer keys/bob-mlkem/cert.pem \\\n       \
             --disclose keys/proxy-a-mlkem/cert.pem > sealed-audio-mlkem.sip\n     \
             {} bytes, a TCP message\n   \
             $ sipseal open sealed-audio-mlkem.sip --identity keys/bob-mlkem\n     \
             bob-mlkem opens it (exit 0){}\n",
            pq.to_bytes().len(),
            said(same)
        ));
        put(files, "sealed-audio-mlkem.sip", pq.to_bytes());
    }
    Ok(invite)
}

/// The parties of the demo.
struct Parties {
    alice: Identity,
    proxy_a: Identity,
    proxy_b: Identity,
    bob: Identity,
    /// The trust anchors every party uses.
    anchors: Vec<Cert>,
}

/// Where alice's INVITE reaches proxy-a from (her Contact).
const ALICE_SOURCE: &str = "192.0.2.10:5060";

/// Where alice's AOR may send from (`bindings.yaml`): her phone over UDP
/// (step 6), and a.example.com over TLS (step 10).
const BINDINGS_YAML: &[u8] = b"sip:alice@a.example.com: [\"192.0.2.10\", \"a.example.com:5060\"]\n";

/// `bindings.yaml` as the relay reads it.
fn alice_bindings() -> Bindings {
    Bindings::from_map(
        [(
            "sip:alice@a.example.com".to_owned(),
            vec!["192.0.2.10".to_owned(), "a.example.com:5060".to_owned()],
        )]
        .into(),
    )
}

/// The shell variables the demo's intro sets to each relay's flags on the
/// call's path (as `proxy_opts`).
const SET_FLAGS: &str = "   $ A='--identity keys/proxy-a --via proxy-a.a.example.com:5060 --record-route'  # proxy-a's flags\n   \
                         $ B='--identity keys/proxy-b --via proxy-b.b.example.com --record-route'        # proxy-b's\n";

/// How the relays of the call run: `sipseal proxy --via VIA --record-route`.
fn proxy_opts(via: &str) -> RelayOptions {
    RelayOptions {
        via: Some(via.into()),
        mode: Mode::Proxy(ProxyOptions {
            record_route: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A relay's state: its session keys in `store`, and its pinholes too
/// when it keeps them (`--pinholes`).
fn state(store: &MemoryStore, pinholes: bool) -> RelayState<'_> {
    RelayState {
        sessions: store,
        pinholes: pinholes.then_some(store as &dyn PinholeStore),
        firewall: None,
    }
}

/// One relay step as `sipseal proxy` runs it; the report goes to `out`.
fn hop(
    out: &mut String,
    msg: &Message,
    relay_id: &Identity,
    opts: &RelayOptions,
    state: RelayState<'_>,
    ctx: &mut Context,
) -> Result<Step, Error> {
    let keys = RelayKeys {
        identity: Some(relay_id),
        psks: &[],
        certs: &[],
    };
    let step = relay(msg, &keys, opts, state, ctx).map_err(|err| Error::Relay {
        name: "the demo message".into(),
        err,
    })?;
    out.push_str(&indent(&step.report.to_text()));
    Ok(step)
}

/// The message a relay step sends, whether it forwarded or answered.
fn sent(step: &Step) -> Result<Message, Error> {
    step.outcome.message().cloned().ok_or_else(|| {
        Error::usage(
            "demo: a relay dropped a message it should have passed",
            "this is a bug in the demo; please report it",
        )
    })
}

/// alice -> proxy-a (designated: opens, reports, pinholes) -> proxy-b (blind) -> bob.
fn relay_path(
    out: &mut String,
    files: &mut Files,
    r: &Parties,
    store: &MemoryStore,
    sealed: &Message,
    ctx: &mut Context,
) -> Result<Leg, Error> {
    out.push_str(
        "\n6. the INVITE travels alice -> proxy-a -> proxy-b -> bob. proxy-a is designated:\n   \
         it checks alice's AOR is bound to where the INVITE came from (so the offer may open\n   \
         pinholes: anyone can seal to proxy-a), opens the body, reports the media and SRTP\n   \
         keys, writes firewall pinholes, and forwards the sealed body byte for byte:\n   \
         $ sipseal proxy sealed.sip --identity keys/proxy-a --via proxy-a.a.example.com:5060 \\\n       \
         --record-route --received-from 192.0.2.10:5060 --bindings bindings.yaml \\\n       \
         --report report.txt --pinholes pinholes.nft > invite-to-proxy-b.sip\n\n",
    );
    let mut opts = proxy_opts("proxy-a.a.example.com:5060");
    opts.path.received_from = Some(ALICE_SOURCE.into());
    opts.path.bindings = Some(std::sync::Arc::new(alice_bindings()));
    put(files, "bindings.yaml", BINDINGS_YAML.to_vec());
    let at_a = hop(out, sealed, &r.proxy_a, &opts, state(store, true), ctx)?;
    put(files, "report.txt", at_a.report.to_text().into_bytes());
    let to_b = sent(&at_a)?;
    let same = to_b.body() == sealed.body();
    out.push_str(&format!(
        "    sealed body forwarded byte-identical: {}\n",
        if same { "yes" } else { "NO" }
    ));
    out.push_str(&format!(
        "\n   Route-Security: each hop that sends a request puts an entry naming itself and how\n   \
         its link is secured (level 0 none, 1 authenticated peer, 2 + integrity,\n   \
         3 + confidentiality) on top, so the top entry should name where the request came from.\n   \
         alice's INVITE carries no entry at all, so nothing vouches for the link it arrived on\n   \
         (plain UDP from {ALICE_SOURCE}): proxy-a puts `Route-Security: {ALICE_SOURCE}` on top,\n   \
         an entry without a level, so every later hop and bob see an unchecked link (it counts\n   \
         as level 0). It puts no entry of its own: it was not told how the link it sends on\n   \
         is secured (`--link-level`, step 10).\n",
    ));
    let nft = at_a
        .pinholes
        .as_ref()
        .map(|c| c.to_nft())
        .unwrap_or_default();
    out.push_str(
        "\n   pinholes.nft (`nft -f pinholes.nft`; the answer in the 200 OK completes it):\n\n",
    );
    out.push_str(&indent(
        &nft.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    ));
    put(files, "invite-to-proxy-b.sip", to_b.to_bytes());
    put(files, "pinholes.nft", nft.into_bytes());

    out.push_str(
        "\n   proxy-b is not designated and not a recipient: it forwards without touching its key:\n   \
         $ sipseal proxy invite-to-proxy-b.sip $B > invite-at-bob.sip\n\n",
    );
    let at_b = via_proxy_b(out, &to_b, r, store, ctx)?;
    let to_bob = sent(&at_b)?;
    let invite_notes = [
        dialog::relay_note("proxy-a", sealed, &at_a.report),
        dialog::relay_note("proxy-b", &to_b, &at_b.report),
    ];
    out.push_str(&format!(
        "    Via headers now: {}; Max-Forwards: {}\n",
        to_bob.header_list("Via").len(),
        to_bob.header("Max-Forwards").unwrap_or("-")
    ));
    put(files, "invite-at-bob.sip", to_bob.to_bytes());
    out.push_str("\n   $ sipseal open invite-at-bob.sip --identity keys/bob\n");
    out.push_str(&indent(&view(&to_bob, "bob", &r.bob, store, ctx, &[])));
    Ok(Leg {
        to_bob,
        invite_notes,
    })
}

/// Where the call of step 6 stands when it reaches bob.
struct Leg {
    to_bob: Message,
    /// What proxy-a and proxy-b read of the INVITE, for the ladder.
    invite_notes: [String; 2],
}

/// alice seals `invite` for `spec` (the file `{stem}.sip`) and proxy-a
/// forwards it (`{stem}-to-proxy-b.sip`): what reaches proxy-b.
fn via_proxy_a(
    invite: &Message,
    spec: &SealSpec,
    stem: &str,
    files: &mut Files,
    r: &Parties,
    store: &MemoryStore,
    ctx: &mut Context,
) -> Result<Message, Error> {
    let sealed = ua(store)
        .seal(invite, spec, ctx)
        .map_err(|err| Error::ua("the demo INVITE", err))?
        .sealed;
    put(files, &format!("{stem}.sip"), sealed.message.to_bytes());
    let step = hop(
        &mut String::new(),
        &sealed.message,
        &r.proxy_a,
        &proxy_opts("proxy-a.a.example.com:5060"),
        state(store, false),
        ctx,
    )?;
    let to_b = sent(&step)?;
    put(files, &format!("{stem}-to-proxy-b.sip"), to_b.to_bytes());
    Ok(to_b)
}

/// proxy-b's step: `sipseal proxy --identity keys/proxy-b --via
/// proxy-b.b.example.com --record-route`, its report to `out`.
fn via_proxy_b(
    out: &mut String,
    msg: &Message,
    r: &Parties,
    store: &MemoryStore,
    ctx: &mut Context,
) -> Result<Step, Error> {
    let opts = proxy_opts("proxy-b.b.example.com");
    hop(out, msg, &r.proxy_b, &opts, state(store, false), ctx)
}

/// alice designates proxy-b by URI only; proxy-b answers 496 with its
/// certificate; alice seals again with it added. A scenario of its own:
/// nobody's keys from step 6 are touched.
fn designation_without_key(
    out: &mut String,
    files: &mut Files,
    r: &Parties,
    invite: &Message,
    spec: &SealSpec,
    ctx: &mut Context,
) -> Result<(), Error> {
    let store = MemoryStore::new();
    out.push_str(
        "\n7. the same INVITE when bob's domain wants its proxy to see the SDP: alice designates\n   \
         proxy-b by URI, but has no certificate for it (so no RecipientInfo). A scenario of its\n   \
         own: its commands keep their keys in state-496, apart from the call of step 6.\n   \
         $ sipseal seal invite.sip --peer keys/bob/cert.pem --disclose keys/proxy-a/cert.pem \\\n       \
         --designate sip:proxy-b.b.example.com --state state-496 > designated.sip\n",
    );
    let mut first_spec = spec.clone();
    first_spec.designate = vec!["sip:proxy-b.b.example.com".into()];
    let to_b = via_proxy_a(invite, &first_spec, "designated", files, r, &store, ctx)?;
    out.push_str(
        "\n   proxy-a forwards it as before; proxy-b is designated but cannot open it:\n   \
         $ sipseal proxy designated.sip $A \\\n       \
         --state state-496 > designated-to-proxy-b.sip\n   \
         $ sipseal proxy designated-to-proxy-b.sip $B \\\n       \
         --state state-496 > 496.sip   # exit 5\n\n",
    );
    let at_b = via_proxy_b(out, &to_b, r, &store, ctx)?;
    let Outcome::Respond(answer) = at_b.outcome else {
        return Err(Error::usage(
            "the demo expected a 496 from proxy-b",
            "this is a bug; please report it",
        ));
    };
    let answer_bytes = answer.to_bytes();
    let head_end = answer_bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(answer_bytes.len());
    out.push_str(&indent(&format!(
        "{}\r\n\r\n<{} bytes: proxy-b's certificate, DER>\n",
        String::from_utf8_lossy(&answer_bytes[..head_end]),
        answer.body().len()
    )));
    put(files, "496.sip", answer_bytes);

    let (cert, anchor) =
        trusted_relay_cert(&answer, "496.sip", &r.anchors, ctx.now()).map_err(|err| {
            Error::RelayCert {
                name: "496.sip".into(),
                err,
            }
        })?;
    out.push_str(&format!(
        "\n   alice checks the certificate against her trust anchors (issued by {}) and seals again:\n   \
         $ sipseal seal invite.sip --peer keys/bob/cert.pem --disclose keys/proxy-a/cert.pem \\\n       \
         --add-recipient-from 496.sip --trust keys/trust.pem --state state-496 > resealed.sip\n",
        anchor.subject()
    ));
    let mut second_spec = spec.clone();
    second_spec.disclose.push(Recipient::Cert(Box::new(cert)));
    let to_b = via_proxy_a(invite, &second_spec, "resealed", files, r, &store, ctx)?;
    out.push_str(
        "\n   now proxy-b opens and reads the media on its way to bob:\n   \
         $ sipseal proxy resealed.sip $A \\\n       \
         --state state-496 > resealed-to-proxy-b.sip\n   \
         $ sipseal proxy resealed-to-proxy-b.sip $B \\\n       \
         --state state-496 > resealed-at-bob.sip\n\n",
    );
    let to_bob = sent(&via_proxy_b(out, &to_b, r, &store, ctx)?)?;
    put(files, "resealed-at-bob.sip", to_bob.to_bytes());
    out.push_str("\n   $ sipseal open resealed-at-bob.sip --identity keys/bob --state state-496\n");
    out.push_str(&indent(&view(&to_bob, "bob", &r.bob, &store, ctx, &[])));
    Ok(())
}
