//! Issue 30, the sealing and opening half of `sipseal edge`
//! (`sipseal::edge::Sealer`, docs/guide/11-edge.md): two edges (alice's
//! and bob's, each its own session store), a real `sipseal registrar`
//! answering certificate queries for bob (who enrolled: a REGISTER with a
//! CSR, the certificate installed by `register --accept`), and what
//! the real `openssl cms` and `sipseal proxy` (relay A) make of the
//! bodies on the wire.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cms::enveloped_data::RecipientInfo;
use common::cms::{recipient_skis, ski};
use common::live::Daemon;
use common::realm::{Realm, Wire};
use common::{Succeeds, openssl, repo, s, sipseal, text, write};
use sipseal::context::Context;
use sipseal::edge::body::{EdgeError, Sealer, SealerConfig, Toward};
use sipseal::envelope::Envelope;
use sipseal::keys::{Cert, Identity};
use sipseal::registrar::certcache::CertQuery;
use sipseal::session::Limits;
use sipseal::sip::Message;
use sipseal::sip::compose::{Body, RequestParams, ResponseParams, build_request, build_response};
use sipseal::state::MemoryStore;

const ALICE: &str = "sip:alice@a.example.com";
const BOB: &str = "sip:bob@b.example.com";

const OFFER: &str = "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";
const ANSWER: &str = "v=0\r\no=bob 2808844564 2808844564 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\nm=audio 3456 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";

/// The realm of b.example.com with bob enrolled, its registrar
/// answering certificate queries over TCP.
struct Bench {
    dir: PathBuf,
    realm: Realm,
    registrar: Daemon,
    /// The Contact bob registered.
    contact: String,
    /// bob's identity: keys/bob's key, the realm's certificate for it.
    bob: PathBuf,
}

impl Bench {
    fn new(d: &Path) -> Bench {
        let realm = Realm::new(d, "b.example.com", &["bob"], false);
        let registrar = realm.registrar(
            s(&d.join("registry")),
            &["tcp:127.0.0.1:0"],
            &["--trust", s(&repo().join("keys/trust.pem"))],
        );
        let bob = d.join("bob");
        std::fs::create_dir_all(&bob).unwrap();
        std::fs::copy(repo().join("keys/bob/key.pem"), bob.join("key.pem")).unwrap();
        std::fs::set_permissions(
            bob.join("key.pem"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let extra = ["--identity", s(&bob)];
        let mut wire = Wire::tcp(registrar.port("tcp"));
        let contact = format!("sip:bob@{}", wire.local());
        wire.send(&wire.own_via(&realm.register_request("bob", &contact, &extra)));
        let challenge = wire.final_response().unwrap();
        assert_eq!(challenge.status(), Some(401));
        wire.send(&wire.own_via(&realm.authorized("bob", &contact, &challenge, &extra)));
        let ok = wire.final_response().unwrap();
        assert_eq!(ok.status(), Some(200), "{}", registrar.log_text());
        let file = write(d, "bob-200.sip", &ok.to_bytes());
        sipseal()
            .current_dir(d)
            .args(["register", "--accept", s(&file), "--identity", s(&bob)])
            .args(["--trust", "ca/cert.pem"])
            .succeeds();
        Bench {
            dir: d.to_owned(),
            realm,
            registrar,
            contact,
            bob,
        }
    }

    /// bob unregisters (his binding removed: the registrar withdraws
    /// his certificate).
    fn unregister_bob(&self) {
        let extra = ["--expires", "0"];
        let mut wire = Wire::tcp(self.registrar.port("tcp"));
        let realm = &self.realm;
        wire.send(&wire.own_via(&realm.register_request("bob", &self.contact, &extra)));
        let challenge = wire.final_response().unwrap();
        assert_eq!(challenge.status(), Some(401));
        wire.send(&wire.own_via(&realm.authorized("bob", &self.contact, &challenge, &extra)));
        let ok = wire.final_response().unwrap();
        assert_eq!(ok.status(), Some(200), "{}", self.registrar.log_text());
    }

    /// Where the registrar takes certificate queries.
    fn query_target(&self) -> sipseal::net::Target {
        sipseal::net::Target::parse(
            &format!("tcp:127.0.0.1:{}", self.registrar.port("tcp")),
            &sipseal::net::Hosts::default(),
        )
        .unwrap()
    }

    /// The realm's CA certificate.
    fn realm_ca(&self) -> Vec<Cert> {
        Cert::load_all(&self.dir.join("ca/cert.pem")).unwrap()
    }

    /// A policy file `name` with `text` (`PROXY_A` replaced by relay A's
    /// certificate).
    fn policy(&self, name: &str, text: &str) -> PathBuf {
        let text = text.replace("PROXY_A", s(&repo().join("keys/proxy-a/cert.pem")));
        write(&self.dir, name, text.as_bytes())
    }

    /// A sealer with `policy`, its own memory store, asking this realm's
    /// registrar.
    fn sealer(&self, policy: &Path, agent: &str, limits: Limits) -> Sealer {
        self.sealer_on(policy, agent, limits, Arc::new(MemoryStore::new()))
    }

    /// A sealer with `policy` and `store`.
    fn sealer_on(
        &self,
        policy: &Path,
        agent: &str,
        limits: Limits,
        store: Arc<dyn sipseal::state::SessionStore + Send + Sync>,
    ) -> Sealer {
        let target = self.query_target();
        let mut trust = Cert::load_all(&repo().join("keys/trust.pem")).unwrap();
        trust.extend(self.realm_ca());
        Sealer::new(SealerConfig {
            policy: policy.to_owned(),
            cert_query: Some(target),
            registrar_trust: self.realm_ca(),
            trust,
            store,
            limits,
            agent: agent.into(),
        })
        .unwrap()
    }

    fn bob(&self) -> Arc<Identity> {
        Arc::new(Identity::load_dir(&self.bob).unwrap())
    }
}

fn alice() -> Arc<Identity> {
    Arc::new(Identity::load_dir(&repo().join("keys/alice")).unwrap())
}

/// alice's edge: bob's domain disclosed to relay A, read-only, recorded.
const ALICE_POLICY: &str = "relays:
  proxy-a: PROXY_A
destinations:
  - to: \"sip:dave@b.example.com\"
    unsealable: plain
  - to: \"sip:*@b.example.com\"
    disclose: [proxy-a]
    access: read
    record: true
    unsealable: refuse
";

/// bob's edge: answers go to anyone, sealed under the session key.
const BOB_POLICY: &str = "destinations:
  - to: \"*\"
    unsealable: refuse
";

fn sdp(text: &str) -> Option<Body> {
    Some(Body {
        content_type: "application/sdp".into(),
        bytes: text.as_bytes().to_vec(),
    })
}

/// A request of the phone `from` to `to` (tags in them kept).
fn request(method: &str, from: &str, to: &str, call_id: &str, cseq: u32, body: &str) -> Message {
    let mut ctx = Context::new(None, None);
    build_request(
        &RequestParams {
            method: method.into(),
            from: from.into(),
            to: to.into(),
            call_id: Some(call_id.into()),
            cseq: Some(cseq),
            contact: Some(format!("<{}>", from_uri(from))),
            body: sdp(body),
            ..Default::default()
        },
        &mut ctx,
    )
    .unwrap()
}

fn from_uri(name_addr: &str) -> String {
    let t = name_addr.trim_start_matches('<');
    t.split(['>', ';']).next().unwrap().to_owned()
}

/// The phone's answer to `req` with an SDP, its To tag `tag`.
fn answer(req: &Message, tag: &str, body: &str) -> Message {
    let mut ctx = Context::new(None, None);
    build_response(
        req,
        &ResponseParams {
            code: 200,
            to_tag: Some(tag.into()),
            contact: Some(format!("<{BOB}>")),
            body: sdp(body),
            ..Default::default()
        },
        &mut ctx,
    )
    .unwrap()
}

fn sent(t: Toward) -> Message {
    match t {
        Toward::Send(m) => m,
        Toward::Answer(a) => panic!(
            "answered instead: {}",
            String::from_utf8_lossy(&a.to_bytes())
        ),
    }
}

fn answered(t: Toward) -> Message {
    match t {
        Toward::Answer(a) => a,
        Toward::Send(m) => panic!("sent instead: {}", String::from_utf8_lossy(&m.to_bytes())),
    }
}

fn envelope(m: &Message) -> Envelope {
    assert!(
        m.header("Content-Type")
            .unwrap()
            .starts_with("application/pkcs7-mime"),
        "{}",
        String::from_utf8_lossy(&m.to_bytes())
    );
    Envelope::parse(m.body()).unwrap()
}

/// Whether the body is sealed under a session key (one KEKRecipientInfo:
/// no public-key operation).
fn is_session(m: &Message) -> bool {
    matches!(envelope(m).recipients.as_slice(), [RecipientInfo::Kekri(_)])
}

fn warning(m: &Message) -> String {
    m.header_list("Warning").join(" | ")
}

/// alice's INVITE sealed by her edge, for bob and relay A: what openssl
/// and relay A make of it; bob's edge opens it; the answer, a hold both
/// ways and key updates both ways go under the session key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_sealed_opened_held_and_rekeyed_between_two_edges() {
    let tmp = tempfile::tempdir().unwrap();
    let bench = Bench::new(tmp.path());
    let d = tmp.path();
    let limits = Limits {
        max_uses: Some(2),
        ..Limits::default()
    };
    let edge_a = bench.sealer(
        &bench.policy("a.yaml", ALICE_POLICY),
        "edge-a.a.example.com",
        limits,
    );
    let edge_b = bench.sealer(
        &bench.policy("b.yaml", BOB_POLICY),
        "edge-b.b.example.com",
        limits,
    );
    let (alice, bob) = (alice(), bench.bob());
    let from = format!("<{ALICE}>;tag=a1");
    let invite = request("INVITE", &from, &format!("<{BOB}>"), "call-1@a", 1, OFFER);

    let sealed = sent(edge_a.outgoing(invite.clone(), Arc::clone(&alice)).await);
    let shown = String::from_utf8_lossy(&sealed.to_bytes()).into_owned();
    assert!(!shown.contains("m=audio"), "{shown}");
    let pib = sealed.header_list("Proxy-Inspect-Body");
    assert_eq!(pib.len(), 1, "{shown}");
    assert!(pib[0].contains("proxy-a.a.example.com"), "{shown}");
    assert!(pib[0].contains("access=read"), "{shown}");
    assert!(pib[0].contains("purpose=record"), "{shown}");
    // Exactly bob (the registrar's certificate) and relay A, by openssl.
    let der = write(d, "invite.der", sealed.body());
    let mut want = vec![
        ski(&bench.bob.join("cert.pem")),
        ski(&repo().join("keys/proxy-a/cert.pem")),
    ];
    want.sort();
    assert_eq!(recipient_skis(&der), want);
    // openssl opens it with bob's key: a SignedData (alice's inner
    // signature) over the SDP entity.
    let inner = d.join("inner.der");
    let out = openssl()
        .args([
            "cms",
            "-decrypt",
            "-binary",
            "-inform",
            "DER",
            "-in",
            s(&der),
        ])
        .args([
            "-recip",
            s(&bench.bob.join("cert.pem")),
            "-inkey",
            s(&bench.bob.join("key.pem")),
        ])
        .args(["-out", s(&inner)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // The plaintext is an entity `application/pkcs7-mime;
    // smime-type=signed-data` (RFC 3261 §23.4): its DER after the headers.
    let entity = std::fs::read(&inner).unwrap();
    let at = entity.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(
        String::from_utf8_lossy(&entity[..at]).contains("smime-type=signed-data"),
        "{}",
        String::from_utf8_lossy(&entity[..at])
    );
    let signed = write(d, "signed.der", &entity[at + 4..]);
    let out = openssl()
        .args([
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            s(&signed),
        ])
        .args(["-CAfile", "keys/trust.pem", "-purpose", "any"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let entity = String::from_utf8_lossy(&out.stdout);
    assert!(entity.contains("application/sdp"), "{entity}");
    assert!(entity.ends_with(OFFER), "{entity}");

    // Relay A (designated) opens it with its own key.
    let file = write(d, "invite.sip", &sealed.to_bytes());
    let report = d.join("report.json");
    sipseal()
        .args(["proxy", s(&file), "--identity", "keys/proxy-a"])
        .args([
            "--via",
            "proxy-a.a.example.com:5060",
            "--report-format",
            "json",
        ])
        .arg("--report")
        .arg(&report)
        .succeeds();
    let report = std::fs::read_to_string(&report).unwrap();
    assert!(report.contains("192.0.2.10"), "{report}");

    // bob's edge: plain SDP, alice's, and what it found.
    let plain = sent(edge_b.incoming(sealed, Arc::clone(&bob)).await);
    assert_eq!(plain.body(), OFFER.as_bytes());
    assert_eq!(plain.header("Content-Type"), Some("application/sdp"));
    assert_eq!(
        plain.header("Content-Length"),
        Some(OFFER.len().to_string().as_str())
    );
    assert!(plain.header("Proxy-Inspect-Body").is_none());
    assert_eq!(
        warning(&plain),
        "399 edge-b.b.example.com \"sipseal: sealed; signed by sip:alice@a.example.com (verified); no route security\""
    );

    // bob's 200: under the session key, opened by alice's edge.
    let ok = answer(&plain, "b1", ANSWER);
    let ok_sealed = sent(edge_b.outgoing(ok, Arc::clone(&bob)).await);
    assert!(is_session(&ok_sealed));
    let ok_plain = sent(edge_a.incoming(ok_sealed.clone(), Arc::clone(&alice)).await);
    assert_eq!(ok_plain.body(), ANSWER.as_bytes());
    assert!(
        warning(&ok_plain).contains("sipseal: sealed; signed by sip:bob@b.example.com (verified)"),
        "{}",
        warning(&ok_plain)
    );
    // An edge without the session key (another store) cannot open the
    // answer: the phone gets the 200 without its body, and why.
    let stranger = bench.sealer(&bench.policy("c.yaml", BOB_POLICY), "edge-c", limits);
    let lost = sent(stranger.incoming(ok_sealed, Arc::clone(&alice)).await);
    assert_eq!(lost.status(), Some(200));
    assert!(lost.body().is_empty());
    assert!(lost.header("Content-Type").is_none());
    assert!(
        warning(&lost).contains("the body could not be opened; removed"),
        "{}",
        warning(&lost)
    );

    // Hold and resume both ways, until each side's key is used up and a
    // key update (a full envelope) goes out, which the other opens.
    let to_bob = format!("<{BOB}>;tag=b1");
    let to_alice = format!("<{ALICE}>;tag=a1");
    let (mut a_rekeys, mut b_rekeys) = (0, 0);
    // alice's edge: hold, resume, ... (each answered; bob's answers use
    // up his key first, and his key update replaces alice's key too).
    for round in 0..6u32 {
        let body = match round % 2 {
            0 => OFFER.replace("a=sendrecv", "a=sendonly"),
            _ => OFFER.to_owned(),
        };
        let re = request("INVITE", &from, &to_bob, "call-1@a", 2 + round, &body);
        let re_sealed = sent(edge_a.outgoing(re, Arc::clone(&alice)).await);
        if !is_session(&re_sealed) {
            a_rekeys += 1;
            assert_eq!(envelope(&re_sealed).recipients.len(), 2, "bob and relay A");
        }
        let re_plain = sent(edge_b.incoming(re_sealed, Arc::clone(&bob)).await);
        assert_eq!(re_plain.body(), body.as_bytes(), "round {round}");
        assert!(
            warning(&re_plain).contains("signed by sip:alice@a.example.com (verified)"),
            "{}",
            warning(&re_plain)
        );
        let re_ok = sent(
            edge_b
                .outgoing(answer(&re_plain, "b1", ANSWER), Arc::clone(&bob))
                .await,
        );
        if !is_session(&re_ok) {
            b_rekeys += 1;
        }
        let re_ok = sent(edge_a.incoming(re_ok, Arc::clone(&alice)).await);
        assert_eq!(re_ok.body(), ANSWER.as_bytes(), "round {round}");
    }
    assert!(a_rekeys >= 1, "alice's edge never rekeyed");
    assert!(b_rekeys >= 1, "bob's edge never rekeyed an answer");
    // bob's edge: hold and resume the other way, until its key is used up
    // too (its key update sealed for the certificate alice signed with:
    // the registrar has none for her).
    b_rekeys = 0;
    for round in 0..4u32 {
        let body = match round % 2 {
            0 => ANSWER.replace("a=sendrecv", "a=sendonly"),
            _ => ANSWER.to_owned(),
        };
        let back = request(
            "INVITE",
            &format!("<{BOB}>;tag=b1"),
            &to_alice,
            "call-1@a",
            10 + round,
            &body,
        );
        let back_sealed = sent(edge_b.outgoing(back, Arc::clone(&bob)).await);
        if !is_session(&back_sealed) {
            b_rekeys += 1;
        }
        let back_plain = sent(edge_a.incoming(back_sealed, Arc::clone(&alice)).await);
        assert_eq!(back_plain.body(), body.as_bytes(), "round {round}");
    }
    assert!(b_rekeys >= 1, "bob's edge never rekeyed");
}

/// An edge restarted mid-call (a new Sealer on the same file store)
/// still seals the call's re-INVITE under its session key, and bob's
/// edge opens it: nothing but the session store is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_restarted_mid_call_keeps_sealing_under_the_stored_key() {
    let tmp = tempfile::tempdir().unwrap();
    let bench = Bench::new(tmp.path());
    let state = tmp.path().join("edge-a-state");
    let policy = bench.policy("a.yaml", ALICE_POLICY);
    let store = || -> Arc<dyn sipseal::state::SessionStore + Send + Sync> {
        Arc::new(sipseal::state::FileStore::new(&state))
    };
    let edge_b = bench.sealer(
        &bench.policy("b.yaml", BOB_POLICY),
        "edge-b",
        Limits::default(),
    );
    let (alice, bob) = (alice(), bench.bob());
    let from = format!("<{ALICE}>;tag=a4");
    let invite = request("INVITE", &from, &format!("<{BOB}>"), "call-11@a", 1, OFFER);
    {
        let edge_a = bench.sealer_on(&policy, "edge-a", Limits::default(), store());
        let sealed = sent(edge_a.outgoing(invite, Arc::clone(&alice)).await);
        let plain = sent(edge_b.incoming(sealed, Arc::clone(&bob)).await);
        let ok = sent(
            edge_b
                .outgoing(answer(&plain, "b4", ANSWER), Arc::clone(&bob))
                .await,
        );
        sent(edge_a.incoming(ok, Arc::clone(&alice)).await);
    }
    let edge_a = bench.sealer_on(&policy, "edge-a", Limits::default(), store());
    let hold = OFFER.replace("a=sendrecv", "a=sendonly");
    let re = request(
        "INVITE",
        &from,
        &format!("<{BOB}>;tag=b4"),
        "call-11@a",
        2,
        &hold,
    );
    let re = sent(edge_a.outgoing(re, Arc::clone(&alice)).await);
    assert!(is_session(&re), "a full envelope after the restart");
    let re = sent(edge_b.incoming(re, Arc::clone(&bob)).await);
    assert_eq!(re.body(), hold.as_bytes());
    let bye = request("BYE", &from, &format!("<{BOB}>;tag=b4"), "call-11@a", 3, "");
    assert_eq!(
        sent(edge_a.outgoing(bye.clone(), Arc::clone(&alice)).await).to_bytes(),
        bye.to_bytes()
    );
}

/// A peer the registrar has no certificate for: refused 488 with the
/// Warning, or (policy `plain`) sent as it is, and its answer and the
/// next offer plain too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_a_certificate_is_refused_or_sent_plain_by_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let bench = Bench::new(tmp.path());
    let edge_a = bench.sealer(
        &bench.policy("a.yaml", ALICE_POLICY),
        "edge-a",
        Limits::default(),
    );
    let alice = alice();
    let from = format!("<{ALICE}>;tag=a2");
    let carol = "sip:carol@b.example.com";
    let invite = request("INVITE", &from, &format!("<{carol}>"), "call-2@a", 1, OFFER);
    let refused = answered(edge_a.outgoing(invite, Arc::clone(&alice)).await);
    assert_eq!(refused.status(), Some(488));
    assert_eq!(
        warning(&refused),
        "399 edge-a \"no certificate for sip:carol@b.example.com: not sent (policy)\""
    );
    let dave = "sip:dave@b.example.com";
    let invite = request("INVITE", &from, &format!("<{dave}>"), "call-3@a", 1, OFFER);
    let out = sent(edge_a.outgoing(invite.clone(), Arc::clone(&alice)).await);
    assert_eq!(out.to_bytes(), invite.to_bytes());
    // The answer comes back plain: handed on, with a Warning.
    let mut ok = answer(&invite, "d1", ANSWER);
    ok.set_header("To", &format!("<{dave}>;tag=d1"));
    let back = sent(edge_a.incoming(ok, Arc::clone(&alice)).await);
    assert_eq!(back.body(), ANSWER.as_bytes());
    assert!(
        warning(&back).contains("sipseal: not sealed"),
        "{}",
        warning(&back)
    );
    // The next offer of the call goes plain as well.
    let re = request(
        "INVITE",
        &from,
        &format!("<{dave}>;tag=d1"),
        "call-3@a",
        2,
        OFFER,
    );
    let out = sent(edge_a.outgoing(re.clone(), Arc::clone(&alice)).await);
    assert_eq!(out.to_bytes(), re.to_bytes());
    // A destination no entry matches is refused.
    let other = request(
        "INVITE",
        &from,
        "<sip:erin@c.example.com>",
        "call-4@a",
        1,
        OFFER,
    );
    let refused = answered(edge_a.outgoing(other, Arc::clone(&alice)).await);
    assert_eq!(refused.status(), Some(488));
    assert!(warning(&refused).contains("no destination of the disclosure policy matches"));
    // Bodies that are not SDP pass untouched.
    let mut msg = request("MESSAGE", &from, &format!("<{BOB}>"), "call-5@a", 1, "");
    msg.replace_body(
        &[("Content-Type".into(), "text/plain".into())],
        b"hello".to_vec(),
    );
    assert_eq!(
        sent(edge_a.outgoing(msg.clone(), Arc::clone(&alice)).await).to_bytes(),
        msg.to_bytes()
    );
}

/// bob's edge's `incoming:` policy: unsealed refused 488 or accepted with
/// a Warning, unsigned refused 403, a path below the minimum route
/// security 403, a body for someone else 493.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_incoming_policy_refuses_what_it_must() {
    let tmp = tempfile::tempdir().unwrap();
    let bench = Bench::new(tmp.path());
    let bob = bench.bob();
    let alice = alice();
    let strict = bench.sealer(
        &bench.policy(
            "strict.yaml",
            "destinations:\n  - to: \"*\"\n    unsealable: refuse\nincoming:\n  unsealed: refuse\n  unsigned: refuse\n",
        ),
        "edge-b",
        Limits::default(),
    );
    let lenient = bench.sealer(
        &bench.policy("b.yaml", BOB_POLICY),
        "edge-b",
        Limits::default(),
    );
    let from = format!("<{ALICE}>;tag=a3");
    let plain = request("INVITE", &from, &format!("<{BOB}>"), "call-6@a", 1, OFFER);
    let refused = answered(strict.incoming(plain.clone(), Arc::clone(&bob)).await);
    assert_eq!(refused.status(), Some(488));
    assert!(warning(&refused).contains("sipseal: not sealed: refused (policy)"));
    let taken = sent(lenient.incoming(plain, Arc::clone(&bob)).await);
    assert_eq!(taken.body(), OFFER.as_bytes());
    assert_eq!(
        warning(&taken),
        "399 edge-b \"sipseal: not sealed; no route security\""
    );

    // bob's answer to the plain offer his edge took goes plain too.
    let ok = answer(&taken, "b3", ANSWER);
    let out = sent(lenient.outgoing(ok.clone(), Arc::clone(&bob)).await);
    assert_eq!(out.to_bytes(), ok.to_bytes());
    // An answer that is an offer (to an INVITE without SDP) is sealed
    // like one: here for alice, whom the registrar has no certificate
    // for, and `unsealable: refuse`: it goes without its SDP, never plain.
    let late = request("INVITE", &from, &format!("<{BOB}>"), "call-9@a", 1, "");
    let late = sent(lenient.incoming(late, Arc::clone(&bob)).await);
    let offer = sent(
        lenient
            .outgoing(answer(&late, "b9", ANSWER), Arc::clone(&bob))
            .await,
    );
    assert_eq!(offer.status(), Some(200));
    assert!(offer.body().is_empty());
    assert_eq!(
        warning(&offer),
        "399 edge-b \"no certificate for sip:alice@a.example.com: not sent (policy)\""
    );

    // Unsigned: alice's edge with access: modify signs nothing inside.
    let modify = bench.sealer(
        &bench.policy(
            "modify.yaml",
            "relays:\n  proxy-a: PROXY_A\ndestinations:\n  - to: \"*\"\n    disclose: [proxy-a]\n    access: modify\n    unsealable: refuse\n",
        ),
        "edge-a",
        Limits::default(),
    );
    let invite = request("INVITE", &from, &format!("<{BOB}>"), "call-7@a", 1, OFFER);
    let sealed = sent(modify.outgoing(invite, Arc::clone(&alice)).await);
    assert!(
        sealed
            .header("Proxy-Inspect-Body")
            .unwrap()
            .contains("access=modify")
    );
    let refused = answered(strict.incoming(sealed.clone(), Arc::clone(&bob)).await);
    assert_eq!(refused.status(), Some(403));
    assert!(
        warning(&refused).contains("not signed: refused (policy)"),
        "{}",
        warning(&refused)
    );
    let taken = sent(lenient.incoming(sealed, Arc::clone(&bob)).await);
    assert_eq!(taken.body(), OFFER.as_bytes());
    assert!(
        warning(&taken).contains("sipseal: sealed; not signed"),
        "{}",
        warning(&taken)
    );

    // The route: a link below level 3 is refused before anything opens.
    let routed = bench.sealer(
        &bench.policy(
            "route.yaml",
            "destinations:\n  - to: \"*\"\n    unsealable: refuse\nincoming:\n  min_route_level: 3\n",
        ),
        "edge-b",
        Limits::default(),
    );
    let edge_a = bench.sealer(
        &bench.policy("a.yaml", ALICE_POLICY),
        "edge-a",
        Limits::default(),
    );
    let invite = request("INVITE", &from, &format!("<{BOB}>"), "call-8@a", 1, OFFER);
    let sealed = sent(edge_a.outgoing(invite, Arc::clone(&alice)).await);
    let plain = request("INVITE", &from, &format!("<{BOB}>"), "call-10@a", 1, OFFER);
    let refused = answered(routed.incoming(plain, Arc::clone(&bob)).await);
    assert_eq!(refused.status(), Some(403));
    let refused = answered(routed.incoming(sealed.clone(), Arc::clone(&bob)).await);
    assert_eq!(refused.status(), Some(403));
    assert!(
        warning(&refused).contains("route security"),
        "{}",
        warning(&refused)
    );

    // A body sealed for someone else: 493, nothing told of why.
    let carol = Arc::new(Identity::load_dir(&repo().join("keys/carol")).unwrap());
    let refused = answered(lenient.incoming(sealed, carol).await);
    assert_eq!(refused.status(), Some(493));
    assert_eq!(
        warning(&refused),
        "399 edge-b \"sipseal: sealed; the body could not be opened\""
    );
}

/// A call whose SDP went sealed is not taken back to plain by the
/// network: a plain answer to a sealed offer (a relay on the path
/// swapping the sealed 200 for its own media address and SRTP key), or
/// a plain re-INVITE in the call, used to be handed to the phone with a
/// Warning under `unsealed: accept`, which is for calls that came in
/// plain. Now the answer reaches the phone without its SDP and the
/// re-INVITE is refused 488, on the side that sealed the offer and on
/// the side that opened it; a plain call stays plain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_call_is_not_downgraded_to_plain_sdp_by_the_network() {
    let tmp = tempfile::tempdir().unwrap();
    let bench = Bench::new(tmp.path());
    let (alice, bob) = (alice(), bench.bob());
    let edge_a = bench.sealer(
        &bench.policy("a.yaml", ALICE_POLICY),
        "edge-a",
        Limits::default(),
    );
    let edge_b = bench.sealer(
        &bench.policy("b.yaml", BOB_POLICY),
        "edge-b",
        Limits::default(),
    );
    let from = format!("<{ALICE}>;tag=a20");
    let invite = request("INVITE", &from, &format!("<{BOB}>"), "call-20@a", 1, OFFER);
    let sealed = sent(edge_a.outgoing(invite.clone(), Arc::clone(&alice)).await);
    let opened = sent(edge_b.incoming(sealed, Arc::clone(&bob)).await);
    assert_eq!(opened.body(), OFFER.as_bytes());

    // The answer comes back plain: alice's phone gets the 200, no SDP.
    let forged = answer(&invite, "b20", ANSWER);
    let got = sent(edge_a.incoming(forged, Arc::clone(&alice)).await);
    assert_eq!(got.status(), Some(200));
    assert!(
        got.body().is_empty(),
        "a plain answer to a sealed offer reached the phone: {}",
        String::from_utf8_lossy(&got.to_bytes())
    );
    assert!(got.header("Content-Type").is_none());
    assert!(
        warning(&got).contains("not sealed in a sealed call"),
        "{}",
        warning(&got)
    );
    // A plain re-INVITE in the call, either way: 488.
    let to_alice = format!("<{ALICE}>;tag=a20");
    let re = request(
        "INVITE",
        &format!("<{BOB}>;tag=b20"),
        &to_alice,
        "call-20@a",
        5,
        ANSWER,
    );
    let refused = answered(edge_a.incoming(re, Arc::clone(&alice)).await);
    assert_eq!(refused.status(), Some(488));
    assert!(
        warning(&refused).contains("not sealed in a sealed call"),
        "{}",
        warning(&refused)
    );
    let re = request(
        "INVITE",
        &from,
        &format!("<{BOB}>;tag=b20"),
        "call-20@a",
        2,
        OFFER,
    );
    let refused = answered(edge_b.incoming(re, Arc::clone(&bob)).await);
    assert_eq!(refused.status(), Some(488));

    // A call that came in plain stays plain (`unsealed: accept`).
    let plain = request("INVITE", &from, &format!("<{BOB}>"), "call-21@a", 1, OFFER);
    let taken = sent(edge_b.incoming(plain, Arc::clone(&bob)).await);
    assert_eq!(taken.body(), OFFER.as_bytes());
    let re = request(
        "INVITE",
        &from,
        &format!("<{BOB}>;tag=b21"),
        "call-21@a",
        2,
        OFFER,
    );
    let taken = sent(edge_b.incoming(re, Arc::clone(&bob)).await);
    assert_eq!(taken.body(), OFFER.as_bytes());
}

/// Under `unsigned: refuse`, a key update in a sealed call must come
/// from the call's peer. An unsigned full envelope for bob in alice's
/// call was refused, but the edge then forgot the call's session key
/// (the sender's next message under it: 493); one signed by carol (a
/// certificate holder who verifies, From carol) was taken and replaced
/// the call's key with carol's, under which bob's edge would seal his
/// next SDP. Now both are refused 403 and the call keeps its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_update_in_a_sealed_call_is_taken_only_from_the_calls_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let bench = Bench::new(tmp.path());
    let bob = bench.bob();
    let strict = bench.sealer(
        &bench.policy(
            "strict.yaml",
            "destinations:\n  - to: \"*\"\n    unsealable: refuse\nincoming:\n  unsigned: refuse\n",
        ),
        "edge-b",
        Limits::default(),
    );
    let edge_a = bench.sealer(
        &bench.policy("a.yaml", ALICE_POLICY),
        "edge-a",
        Limits::default(),
    );
    let from = format!("<{ALICE}>;tag=a30");
    let to_bob = format!("<{BOB}>;tag=b30");
    let invite = request("INVITE", &from, &format!("<{BOB}>"), "call-30@a", 1, OFFER);
    let sealed = sent(edge_a.outgoing(invite, alice()).await);
    let opened = sent(strict.incoming(sealed, Arc::clone(&bob)).await);
    assert_eq!(opened.body(), OFFER.as_bytes());
    let ok = answer(&opened, "b30", ANSWER);
    let ok = sent(strict.outgoing(ok, Arc::clone(&bob)).await);
    assert!(is_session(&ok));
    sent(edge_a.incoming(ok, alice()).await);

    // An unsigned full envelope for bob in the call (another edge, no
    // session of its own, `access: modify`): refused.
    let modify = bench.sealer(
        &bench.policy(
            "modify.yaml",
            "destinations:\n  - to: \"*\"\n    access: modify\n    unsealable: refuse\n",
        ),
        "mallory",
        Limits::default(),
    );
    let forged = request("INVITE", &from, &to_bob, "call-30@a", 2, OFFER);
    let forged = sent(modify.outgoing(forged, alice()).await);
    assert!(!is_session(&forged));
    let refused = answered(strict.incoming(forged, Arc::clone(&bob)).await);
    assert_eq!(refused.status(), Some(403));
    // carol, who verifies, in the call: refused too.
    let carol = Arc::new(Identity::load_dir(&repo().join("keys/carol")).unwrap());
    let from_carol = "<sip:carol@a.example.com>;tag=a30".to_owned();
    let forged = request("INVITE", &from_carol, &to_bob, "call-30@a", 3, OFFER);
    let forged = sent(
        bench
            .sealer(
                &bench.policy("c.yaml", ALICE_POLICY),
                "carol",
                Limits::default(),
            )
            .outgoing(forged, carol)
            .await,
    );
    assert!(!is_session(&forged));
    let refused = answered(strict.incoming(forged, Arc::clone(&bob)).await);
    assert_eq!(
        refused.status(),
        Some(403),
        "carol's key update in alice's call was taken"
    );
    assert!(
        warning(&refused).contains("not the call's peer"),
        "{}",
        warning(&refused)
    );
    // The call's key is the one alice and bob share: alice's next offer
    // under it opens at bob's edge, and bob's answer under it at hers.
    let re = request("INVITE", &from, &to_bob, "call-30@a", 4, OFFER);
    let re = sent(edge_a.outgoing(re, alice()).await);
    assert!(is_session(&re));
    let re = sent(strict.incoming(re, Arc::clone(&bob)).await);
    assert_eq!(re.body(), OFFER.as_bytes(), "{}", warning(&re));
    let ok = sent(
        strict
            .outgoing(answer(&re, "b30", ANSWER), Arc::clone(&bob))
            .await,
    );
    assert!(is_session(&ok));
    let ok = sent(edge_a.incoming(ok, alice()).await);
    assert_eq!(ok.body(), ANSWER.as_bytes(), "{}", warning(&ok));
}

/// The edge's certificate cache asks about a cached certificate again
/// (here at once; the edge after `RECHECK`): once bob unregistered, the
/// registrar withdrew his certificate, answers 404, and it is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_certificate_is_dropped_at_its_recheck() {
    let tmp = tempfile::tempdir().unwrap();
    let bench = Bench::new(tmp.path());
    let q = CertQuery::new(bench.query_target(), bench.realm_ca())
        .with_recheck(std::time::Duration::ZERO);
    let now = time::OffsetDateTime::now_utc();
    let cert = q.cert_for(BOB, alice()).await.unwrap();
    assert_eq!(cert.uri().as_deref(), Some(BOB));
    assert!(q.cached(BOB, now).is_some());
    // Asked again while still registered: the same, kept.
    let again = q.cert_for(BOB, alice()).await.unwrap();
    assert_eq!(again.cert, cert.cert);
    bench.unregister_bob();
    let e = q.cert_for(BOB, alice()).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(q.cached(BOB, now).is_none());
}

/// Policy files that cannot be used are refused with the file and line;
/// an EC identity cannot take `access: read`.
#[test]
fn policy_errors_are_clear_and_an_ec_identity_cannot_sign_inside() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let new = |file: &Path| {
        Sealer::new(SealerConfig {
            policy: file.to_owned(),
            cert_query: None,
            registrar_trust: Vec::new(),
            trust: Vec::new(),
            store: Arc::new(MemoryStore::new()),
            limits: Limits::default(),
            agent: "edge".into(),
        })
    };
    let cases: [(&str, &str, &str); 4] = [
        (
            "unknown-key.yaml",
            "destinations:\n  - to: \"*\"\n    unsealable: plain\n    acess: read\n",
            "unknown-key.yaml:4: destinations[0]: unknown field `acess`",
        ),
        (
            "unknown-relay.yaml",
            "relays: {}\ndestinations:\n  - to: \"*\"\n    disclose: [proxy-q]\n    unsealable: plain\n",
            "unknown-relay.yaml:4: destination \"*\" discloses to relay \"proxy-q\", which `relays:` does not name (it names: none)",
        ),
        (
            "missing-cert.yaml",
            "relays:\n  proxy-a: no/such.pem\ndestinations:\n  - to: \"*\"\n    unsealable: plain\n",
            "missing-cert.yaml:2: relay proxy-a: its certificate",
        ),
        (
            "empty.yaml",
            "destinations: []\n",
            "empty.yaml:1: no destinations",
        ),
    ];
    for (name, body, expected) in cases {
        let file = write(d, name, body.as_bytes());
        let Err(e) = new(&file) else {
            panic!("{name} was taken");
        };
        assert!(matches!(e, EdgeError::Policy(_)), "{name}: {e}");
        assert_eq!(e.class(), sipseal::error::ErrorClass::Config);
        assert!(e.to_string().contains(expected), "{name}: {e}");
    }
    let file = write(
        d,
        "read.yaml",
        format!(
            "relays:\n  proxy-a: {}\ndestinations:\n  - to: \"*\"\n    disclose: [proxy-a]\n    access: read\n    unsealable: refuse\n",
            s(&repo().join("keys/proxy-a/cert.pem"))
        )
        .as_bytes(),
    );
    let sealer = new(&file).unwrap();
    let ec = Identity::load_dir(&repo().join("keys/alice-ec")).unwrap();
    let e = sealer.check_identity(&ec).unwrap_err();
    assert!(
        e.to_string()
            .contains("only an RSA identity can sign inside"),
        "{e}"
    );
    sealer
        .check_identity(&Identity::load_dir(&repo().join("keys/alice")).unwrap())
        .unwrap();
    // A reload that fails keeps the policy in use.
    std::fs::write(&file, "destinations: nope\n").unwrap();
    assert!(sealer.reload().is_err());
    assert_eq!(sealer.policy().destinations.len(), 1);
}
