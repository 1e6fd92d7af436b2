//! `sipseal gateway` with a real browser (issue 29): headless Chromium
//! driven over WebDriver by chromedriver (tests/browser), through the
//! whole path: browser → gateway (HTTPS) → its pseudo user agent's call
//! over mutual TLS → relay A (the offer disclosed to it) → relay B
//! (blind) → `sipseal terminal` → a local HTTP service
//! (tests/common/callpath.rs). alice logs in, sees exactly her
//! destinations, opens one, and the service's page appears through the
//! gateway (a screenshot is kept under target/tmp/screenshots); bob, in
//! a browser of his own, does not see alice's destinations; a wrong
//! password gets the login page again with the same words as an unknown
//! user. Without chromium and chromedriver the test says SKIPPED and why.
#![cfg(feature = "live")]

mod browser;
mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use browser::Browser;
use common::callpath::{self, CallPath};
use common::live::Daemon;
use common::{Succeeds, sipseal};
use fantoccini::Locator;
use sha2::Digest;
use x509_cert::der::{DecodePem, Encode};

const PAGE_TEXT: &str = "terminal 2 says hello";

/// An HTTP service on 127.0.0.1 answering every request with a small
/// page (keep-alive).
fn http_service() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let page = format!(
                    "<!DOCTYPE html><html><head><title>Terminal 2</title></head>\
<body><h1>{PAGE_TEXT}</h1><p>served behind a sealed data channel</p></body></html>"
                );
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    while let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        got.drain(..end + 4);
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n{page}",
                            page.len()
                        );
                        if conn.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}

fn passwd(users: &std::path::Path, dir: &std::path::Path, aor: &str, pw: &str) {
    let pwfile = dir.join("pw");
    std::fs::write(&pwfile, pw).unwrap();
    sipseal()
        .args(["registrar", "passwd", "--realm", "a.example.com"])
        .args(["--user", aor, "--users", common::s(users)])
        .args(["--password-file", common::s(&pwfile)])
        .succeeds();
}

/// The base64 SHA-256 of the gateway certificate's public key, the one
/// certificate Chromium is told to accept.
fn spki_of(cert: &str) -> String {
    let pem = std::fs::read(common::repo().join(cert)).unwrap();
    let cert = x509_cert::Certificate::from_pem(&pem).unwrap();
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&spki))
}

/// Log in with the form, and wait for `then` (CSS) on the next page.
async fn log_in(b: &Browser, base: &str, id: &str, password: &str, then: &str) {
    b.client.goto(base).await.unwrap();
    b.client
        .find(Locator::Css("input[name=id]"))
        .await
        .unwrap()
        .send_keys(id)
        .await
        .unwrap();
    b.client
        .find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    b.client
        .find(Locator::Css("form[action='/login'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let found = b
        .client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(then))
        .await;
    if let Err(e) = found {
        let url = b.client.current_url().await.unwrap();
        let page = b.client.source().await.unwrap();
        panic!("{then} after logging in as {id}: {e}; at {url}:\n{page}");
    }
}

/// Wait (at most 20 s) until the browser is on a page whose path starts
/// with `prefix`.
/// (host, path).
async fn wait_path(b: &Browser, prefix: &str) -> (String, String) {
    let until = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let url = b.client.current_url().await.unwrap();
        if url.path().starts_with(prefix) {
            return (
                url.host_str().unwrap_or_default().to_owned(),
                url.path().to_owned(),
            );
        }
        assert!(std::time::Instant::now() < until, "still on {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The names on the portal's destination buttons.
async fn destinations(b: &Browser) -> Vec<String> {
    let mut names = Vec::new();
    for button in b
        .client
        .find_all(Locator::Css("ul li button"))
        .await
        .unwrap()
    {
        names.push(button.text().await.unwrap());
    }
    names
}

#[test]
fn a_real_browser_reaches_the_service_behind_the_terminal_through_the_gateway() {
    if let Some(why) = browser::missing() {
        println!("SKIPPED: {why} (apt-get install chromium chromium-driver)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let users = d.join("users.yaml");
    passwd(&users, d, "sip:alice@a.example.com", "alice-pw");
    passwd(&users, d, "sip:bob@a.example.com", "bob-pw");
    let service = http_service();
    let path = CallPath::start(&d.join("path"), service, &[]);
    path.wait_registered();
    let table = common::write(
        d,
        "destinations.yaml",
        format!(
            r#"version: 1
users:
  alice:
    destinations:
      - name: Terminal 2
        uri: {}
        description: The service behind terminal 2
        origin: http://127.0.0.1:{service}
        cert: {}
      - name: Notes
        uri: sip:notes@b.example.com
  bob:
    destinations:
      - name: Mailbox
        uri: sip:mail@c.example.com
"#,
            callpath::DESTINATION,
            CallPath::destination_cert(),
        )
        .as_bytes(),
    );
    let mut args = vec![
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--identity",
        "keys/proxy-a",
        "--users",
        common::s(&users),
        "--realm",
        "a.example.com",
        "--destinations",
        common::s(&table),
    ];
    let call_flags = path.gateway_args();
    args.extend(call_flags.iter().map(String::as_str));
    let gw = Daemon::start(d, "gateway", &args);
    let addr: SocketAddr = gw.addrs[0]
        .strip_prefix("https://")
        .unwrap()
        .parse()
        .unwrap();
    let base = format!("https://{addr}/");
    let spki = spki_of("keys/proxy-a/cert.pem");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let alice = Browser::start(&spki).await;
        // A wrong password: the login page again, with the words an
        // unknown user gets too.
        log_in(&alice, &base, "alice", "not-her-password", "p.msg").await;
        let wrong = alice.client.source().await.unwrap();
        assert!(wrong.contains("name=\"password\""), "{wrong}");
        assert!(wrong.contains("Wrong ID or password."), "{wrong}");
        log_in(&alice, &base, "mallory", "alice-pw", "p.msg").await;
        let unknown = alice.client.source().await.unwrap();
        assert!(unknown.contains("Wrong ID or password."), "{unknown}");

        // alice: exactly her destinations.
        log_in(&alice, &base, "alice", "alice-pw", "ul li button").await;
        assert_eq!(destinations(&alice).await, ["Terminal 2", "Notes"]);
        alice
            .client
            .find(Locator::XPath("//button[text()='Terminal 2']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let (host, _) = wait_path(&alice, "/s/").await;
        let h1 = alice.client.find(Locator::Css("h1")).await.unwrap();
        assert_eq!(h1.text().await.unwrap(), PAGE_TEXT, "{}", path.logs());
        assert_eq!(host, "127.0.0.1");
        assert_eq!(alice.client.title().await.unwrap(), "Terminal 2");
        let shot = alice.screenshot("gateway-terminal-2.png").await;
        let png = std::fs::read(&shot).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000);
        println!("screenshot: {}", shot.display());

        // bob, in a browser of his own: his destination, none of hers.
        let bob = Browser::start(&spki).await;
        log_in(&bob, &base, "bob", "bob-pw", "ul li button").await;
        assert_eq!(destinations(&bob).await, ["Mailbox"]);
        let page = bob.client.source().await.unwrap();
        assert!(
            !page.contains("Terminal 2") && !page.contains("Notes"),
            "{page}"
        );
        bob.close().await;
        alice.close().await;
    });
    // The page came by the call: through relay A (opened) and relay B
    // (blind) to the terminal, which answered alice.
    path.assert_designated_and_blind(1);
    assert!(
        path.terminal
            .log_text()
            .contains("\"caller\":\"sip:alice@a.example.com\""),
        "{}",
        path.logs()
    );
}
