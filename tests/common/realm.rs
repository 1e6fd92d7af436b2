//! A registrar's realm for the live tests: its CA, the registrar's (RSA)
//! identity, users with passwords, a registrar process, and user agents
//! that register over a raw UDP or TCP socket (Digest by `sipseal
//! register --challenge`) and stay on that socket.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sipseal::sip::Message;

use super::live::Daemon;
use super::{Succeeds, s, sipseal};

/// A realm in `dir`: `ca/`, the registrar's `reg/`, `users.yaml`, and a
/// password file `USER.pw` per user (`alice-pw`, ...).
pub struct Realm {
    /// Where its files are.
    pub dir: PathBuf,
    /// Its name (`example.com`).
    pub name: String,
}

impl Realm {
    /// A realm `name` with these users (user parts); MD5 HA1s too when `md5`.
    pub fn new(dir: &Path, name: &str, users: &[&str], md5: bool) -> Realm {
        let run = |args: &[&str]| {
            sipseal().current_dir(dir).args(args).succeeds();
        };
        run(&["keys", "ca", "--name", "CN=Example CA", "--out", "ca"]);
        run(&[
            "keys",
            "generate",
            "--uri",
            &format!("sip:registrar.{name}"),
            "--ca",
            "ca",
            "--out",
            "reg",
        ]);
        for user in users {
            let pw = format!("{user}.pw");
            std::fs::write(dir.join(&pw), format!("{user}-pw\n")).unwrap();
            let aor = format!("sip:{user}@{name}");
            let mut args = vec![
                "registrar",
                "passwd",
                "--users",
                "users.yaml",
                "--realm",
                name,
                "--user",
                &aor,
                "--password-file",
                &pw,
            ];
            if md5 {
                args.push("--allow-md5");
            }
            run(&args);
        }
        Realm {
            dir: dir.to_owned(),
            name: name.to_owned(),
        }
    }

    /// `sipseal registrar --listen ...` for this realm, its state in
    /// `state` (a directory or redis://), with `extra` flags.
    pub fn registrar(&self, state: &str, listen: &[&str], extra: &[&str]) -> Daemon {
        let d = &self.dir;
        let mut args: Vec<String> = vec!["registrar".into()];
        for l in listen {
            args.push("--listen".into());
            args.push((*l).into());
        }
        for a in [
            "--realm",
            &self.name,
            "--ca",
            s(&d.join("ca")),
            "--identity",
            s(&d.join("reg")),
            "--users",
            s(&d.join("users.yaml")),
            "--state",
            state,
        ] {
            args.push(a.into());
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Daemon::start(d, "registrar", &args)
    }

    /// A REGISTER for `user` with `contact` (no credentials yet).
    pub fn register_request(&self, user: &str, contact: &str, extra: &[&str]) -> Vec<u8> {
        sipseal()
            .current_dir(&self.dir)
            .args(["register", "--uri", &format!("sip:{user}@{}", self.name)])
            .args(["--contact", contact])
            .args(extra)
            .succeeds()
            .stdout
    }

    /// The authorized retry of a REGISTER for `user` answering `challenge`.
    pub fn authorized(
        &self,
        user: &str,
        contact: &str,
        challenge: &Message,
        extra: &[&str],
    ) -> Vec<u8> {
        let file = self.dir.join(format!("{user}-401.sip"));
        std::fs::write(&file, challenge.to_bytes()).unwrap();
        let pw = self.dir.join(format!("{user}.pw"));
        let mut args = vec!["--challenge", s(&file), "--password-file", s(&pw)];
        args.extend_from_slice(extra);
        self.register_request(user, contact, &args)
    }
}

impl Realm {
    /// Give `user` a certificate the registrar answers certificate
    /// queries with and no binding: a PUBLISH with a CSR for the key in
    /// `identity` (Digest, auth-int over the CSR) to the registrar's TCP
    /// `port`, valid `expires` seconds (at most the registrar's
    /// `--max-expires`), the 200's certificate installed as
    /// `identity/cert.pem`.
    /// (The edge cannot enrol at the phone's REGISTER under sipseal's
    /// registrar: the phone's Digest does not cover the CSR.)
    #[allow(dead_code)]
    pub fn publish(&self, port: u16, user: &str, identity: &Path, expires: u32) {
        let aor = format!("sip:{user}@{}", self.name);
        let request = |extra: &[&str]| {
            sipseal()
                .current_dir(&self.dir)
                .args(["register", "--uri", &aor, "--publish"])
                .args(["--identity", s(identity)])
                .args(["--expires", &expires.to_string()])
                .args(extra)
                .succeeds()
                .stdout
        };
        let mut wire = Wire::tcp(port);
        wire.send(&wire.own_via(&request(&[])));
        let challenge = wire.final_response().expect("the registrar's 401");
        assert_eq!(challenge.status(), Some(401), "PUBLISH for {aor}");
        let file = self.dir.join(format!("{user}-publish-401.sip"));
        std::fs::write(&file, challenge.to_bytes()).unwrap();
        let pw = self.dir.join(format!("{user}.pw"));
        wire.send(&wire.own_via(&request(&[
            "--challenge",
            s(&file),
            "--password-file",
            s(&pw),
        ])));
        let ok = wire.final_response().expect("the registrar's 200");
        assert_eq!(
            ok.status(),
            Some(200),
            "PUBLISH for {aor}: {}",
            String::from_utf8_lossy(&ok.to_bytes())
        );
        let file = self.dir.join(format!("{user}-publish-200.sip"));
        std::fs::write(&file, ok.to_bytes()).unwrap();
        sipseal()
            .current_dir(&self.dir)
            .args(["register", "--accept", s(&file), "--identity", s(identity)])
            .args(["--trust", "ca/cert.pem"])
            .succeeds();
    }
}

/// A user agent on a raw socket: UDP (to one server) or a TCP
/// connection it keeps.
pub enum Wire {
    /// A UDP socket and the server's port.
    Udp(UdpSocket, u16),
    /// A TCP connection and what was read past the last message.
    Tcp(TcpStream, sipseal::net::frame::Framer),
}

impl Wire {
    /// A UDP socket that sends to 127.0.0.1:`port`.
    pub fn udp(port: u16) -> Wire {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Wire::Udp(socket, port)
    }

    /// A TCP connection to 127.0.0.1:`port`.
    pub fn tcp(port: u16) -> Wire {
        let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Wire::Tcp(c, sipseal::net::frame::Framer::new(65_535))
    }

    /// Its local address (what its Via and Contact name).
    pub fn local(&self) -> std::net::SocketAddr {
        match self {
            Wire::Udp(s, _) => s.local_addr().unwrap(),
            Wire::Tcp(c, _) => c.local_addr().unwrap(),
        }
    }

    /// The transport token for its Via.
    pub fn token(&self) -> &'static str {
        match self {
            Wire::Udp(..) => "UDP",
            Wire::Tcp(..) => "TCP",
        }
    }

    /// `msg` with its top Via naming this socket.
    pub fn own_via(&self, msg: &[u8]) -> Vec<u8> {
        let mut m = Message::parse(msg).unwrap();
        let via = m.header("Via").unwrap().to_owned();
        let params = via.split_once(';').map(|(_, p)| p).unwrap_or_default();
        m.set_header(
            "Via",
            &format!("SIP/2.0/{} {};{params}", self.token(), self.local()),
        );
        m.to_bytes()
    }

    /// Send `msg` as it is.
    pub fn send(&mut self, msg: &[u8]) {
        match self {
            Wire::Udp(s, port) => {
                s.send_to(msg, ("127.0.0.1", *port)).unwrap();
            }
            Wire::Tcp(c, _) => c.write_all(msg).unwrap(),
        }
    }

    /// The next message that arrives (None after 10 s).
    pub fn recv(&mut self) -> Option<Message> {
        let mut buf = vec![0u8; 65_535];
        match self {
            Wire::Udp(s, _) => {
                let (n, _) = s.recv_from(&mut buf).ok()?;
                Message::parse(&buf[..n]).ok()
            }
            Wire::Tcp(c, framer) => loop {
                if let Ok(sipseal::net::frame::Frame::Message(m)) = framer.next_frame() {
                    return Message::parse(&m).ok();
                }
                let n = c.read(&mut buf).ok()?;
                if n == 0 {
                    return None;
                }
                framer.push(&buf[..n]);
            },
        }
    }

    /// The next response, skipping provisional ones.
    pub fn final_response(&mut self) -> Option<Message> {
        loop {
            let m = self.recv()?;
            if m.status().is_some_and(|s| s >= 200) {
                return Some(m);
            }
        }
    }
}
