//! Who is logged in: the password check against the registrar's HA1
//! store, the limits on failed logins, and the session table.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

use crate::registrar::digest::DigestAlgorithm;
use crate::registrar::users::Users;

/// The HA1 a login is checked with: the strongest one `registrar passwd`
/// always writes.
pub const LOGIN_ALGORITHM: DigestAlgorithm = DigestAlgorithm::Sha512_256;

/// Whether `password` is `username`'s in `realm`. An unknown user (or
/// one without an HA1 of [`LOGIN_ALGORITHM`]) is checked against a
/// made-up HA1 from `secret`: the same work, the same answer as a wrong
/// password.
pub fn check_password(
    users: &Users,
    realm: &str,
    username: &str,
    password: &str,
    secret: &[u8],
) -> bool {
    let stored = users
        .get(realm, username)
        .and_then(|u| u.ha1(LOGIN_ALGORITHM))
        .map(str::to_ascii_lowercase);
    let decoy = LOGIN_ALGORITHM.hash(&format!("{}:{username}", hex::encode(secret)));
    let given = LOGIN_ALGORITHM.ha1(username, realm, password);
    let expected = stored.as_deref().unwrap_or(decoy.as_str());
    let same =
        expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()));
    same && stored.is_some()
}

/// Failed logins allowed per client address (an IPv6 client: its /64)
/// in one [`WINDOW`].
pub const MAX_FAILURES_PER_ADDRESS: u32 = 10;
/// Failed logins allowed per username in one [`WINDOW`].
pub const MAX_FAILURES_PER_USER: u32 = 5;
/// The window the failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(300);
/// Entries the limiter keeps at most (then the expired go, and past
/// that the oldest).
const MAX_ENTRIES: usize = 100_000;

/// Failed logins per client address and per username, in fixed windows.
#[derive(Debug, Default)]
pub struct Limiter {
    by_address: HashMap<IpAddr, (Instant, u32)>,
    by_user: HashMap<String, (Instant, u32)>,
}

fn count<K: std::hash::Hash + Eq>(map: &HashMap<K, (Instant, u32)>, k: &K, now: Instant) -> u32 {
    map.get(k)
        .filter(|(start, _)| now.duration_since(*start) < WINDOW)
        .map_or(0, |(_, n)| *n)
}

fn bump<K: std::hash::Hash + Eq + Clone>(map: &mut HashMap<K, (Instant, u32)>, k: K, now: Instant) {
    if map.len() >= MAX_ENTRIES && !map.contains_key(&k) {
        map.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        if map.len() >= MAX_ENTRIES
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (s, _))| *s)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
    }
    let e = map.entry(k).or_insert((now, 0));
    if now.duration_since(e.0) >= WINDOW {
        *e = (now, 0);
    }
    e.1 = e.1.saturating_add(1);
}

/// The client an address counts for: an IPv6 host holds a whole /64
/// (RFC 4291 §2.5.1; SLAAC, privacy addresses) and picks a new one at
/// will, so its failures are counted by the /64; an IPv4-mapped address
/// is the IPv4 one.
fn client_of(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from_bits(
                v6.to_bits() & !u128::from(u64::MAX),
            )),
        },
    }
}

impl Limiter {
    /// Whether a login from `addr` as `user` may be tried now.
    pub fn allows(&self, addr: IpAddr, user: &str, now: Instant) -> bool {
        count(&self.by_address, &client_of(addr), now) < MAX_FAILURES_PER_ADDRESS
            && count(&self.by_user, &user.to_owned(), now) < MAX_FAILURES_PER_USER
    }

    /// Count a failed login.
    pub fn failed(&mut self, addr: IpAddr, user: &str, now: Instant) {
        bump(&mut self.by_address, client_of(addr), now);
        bump(&mut self.by_user, user.to_owned(), now);
    }
}

/// A session ends this long after its last request.
pub const SESSION_IDLE: Duration = Duration::from_secs(3600);
/// A session ends this long after its login, whatever its traffic.
pub const SESSION_MAX: Duration = Duration::from_secs(12 * 3600);

/// Sessions open at once, at most: past it a login is refused until
/// some expire.
pub const MAX_SESSIONS: usize = 100_000;

/// Why no session was opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The operating system's RNG failed.
    #[error("the operating system's RNG: {0}")]
    Rng(#[from] rand::rngs::SysError),
    /// [`MAX_SESSIONS`] are open.
    #[error("{MAX_SESSIONS} sessions are open")]
    Full,
}

/// A random token from the operating system's RNG: 32 bytes, hex.
pub fn token() -> Result<String, rand::rngs::SysError> {
    use rand::TryRng;
    let mut bytes = [0u8; 32];
    rand::rngs::SysRng.try_fill_bytes(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// One logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The username.
    pub user: String,
    /// The token the forms carry (CSRF).
    pub csrf: String,
    /// When it logged in.
    pub since: Instant,
    /// Its last request.
    pub seen: Instant,
}

impl Session {
    /// Whether it has ended by `now`.
    pub fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.seen) >= SESSION_IDLE
            || now.duration_since(self.since) >= SESSION_MAX
    }
}

/// The server-side session table, by cookie token.
#[derive(Debug, Default)]
pub struct Sessions {
    by_token: HashMap<String, Session>,
}

impl Sessions {
    /// A new session for `user`: its cookie token.
    pub fn open(&mut self, user: &str, now: Instant) -> Result<String, OpenError> {
        if self.by_token.len() >= MAX_SESSIONS {
            self.expire(now);
            if self.by_token.len() >= MAX_SESSIONS {
                return Err(OpenError::Full);
            }
        }
        let token = token()?;
        self.by_token.insert(
            token.clone(),
            Session {
                user: user.to_owned(),
                csrf: self::token()?,
                since: now,
                seen: now,
            },
        );
        Ok(token)
    }

    /// The live session of `token`, marked as seen at `now`.
    pub fn touch(&mut self, token: &str, now: Instant) -> Option<Session> {
        let s = self.by_token.get_mut(token)?;
        if s.expired(now) {
            self.by_token.remove(token);
            return None;
        }
        s.seen = now;
        Some(s.clone())
    }

    /// End `token`'s session.
    pub fn close(&mut self, token: &str) -> Option<Session> {
        self.by_token.remove(token)
    }

    /// Drop the expired sessions; their tokens.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let gone: Vec<String> = self
            .by_token
            .iter()
            .filter(|(_, s)| s.expired(now))
            .map(|(t, _)| t.clone())
            .collect();
        for t in &gone {
            self.by_token.remove(t);
        }
        gone
    }

    /// How many are open.
    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_checked_against_the_registrars_ha1() {
        let mut users = Users::default();
        users
            .set("example.com", "sip:alice@example.com", "s3cret", false)
            .unwrap();
        assert!(check_password(
            &users,
            "example.com",
            "alice",
            "s3cret",
            b"k"
        ));
        assert!(!check_password(
            &users,
            "example.com",
            "alice",
            "S3cret",
            b"k"
        ));
        assert!(!check_password(
            &users,
            "other.com",
            "alice",
            "s3cret",
            b"k"
        ));
        assert!(!check_password(
            &users,
            "example.com",
            "mallory",
            "s3cret",
            b"k"
        ));
    }

    #[test]
    fn failures_are_limited_per_address_and_per_user_within_the_window() {
        let mut l = Limiter::default();
        let now = Instant::now();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..MAX_FAILURES_PER_USER {
            assert!(l.allows(a, "alice", now));
            l.failed(a, "alice", now);
        }
        assert!(!l.allows(b, "alice", now), "per user, from any address");
        assert!(l.allows(a, "bob", now));
        for _ in MAX_FAILURES_PER_USER..MAX_FAILURES_PER_ADDRESS {
            l.failed(a, "bob", now);
        }
        assert!(!l.allows(a, "carol", now), "per address, for any user");
        assert!(l.allows(a, "alice", now + WINDOW));
    }

    #[test]
    fn an_ipv6_client_is_limited_by_its_64_not_by_each_address_of_it() {
        let mut l = Limiter::default();
        let now = Instant::now();
        // One host picks a new address of its /64 for every try, and a
        // new username each time (password spraying).
        for i in 0..MAX_FAILURES_PER_ADDRESS {
            let a: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
            assert!(l.allows(a, &format!("user{i}"), now));
            l.failed(a, &format!("user{i}"), now);
        }
        let next: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert!(!l.allows(next, "someone", now), "the same /64");
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(l.allows(other, "someone", now), "another /64");
        // An IPv4 client seen through an IPv6 socket is the IPv4 one.
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        for i in 0..MAX_FAILURES_PER_ADDRESS {
            l.failed(v4, &format!("v4user{i}"), now);
        }
        assert!(!l.allows(mapped, "someone", now));
    }

    #[test]
    fn sessions_expire_when_idle_and_close_at_logout() {
        let mut s = Sessions::default();
        let now = Instant::now();
        let t = s.open("alice", now).unwrap();
        assert_eq!(t.len(), 64);
        assert_eq!(s.touch(&t, now).unwrap().user, "alice");
        assert!(s.touch(&t, now + SESSION_IDLE).is_none());
        let t = s.open("alice", now).unwrap();
        assert!(s.close(&t).is_some());
        assert!(s.touch(&t, now).is_none());
    }
}
