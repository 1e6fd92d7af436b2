//! Where every random value and every clock reading comes from, so that
//! deterministic mode (`--seed`, `--now`; docs/SPEC.md §8) is one switch.

use rand::rngs::ChaCha20Rng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Randomness and time for one command run.
pub struct Context {
    rng: ChaCha20Rng,
    /// The current seed in deterministic mode (see [`Context::mix`]).
    seed: Option<[u8; 32]>,
    now: Option<OffsetDateTime>,
}

impl Context {
    /// A context from the optional `--seed` bytes and `--now` time. The seed
    /// of any length is hashed to the 256-bit ChaCha20 seed.
    pub fn new(seed: Option<&[u8]>, now: Option<OffsetDateTime>) -> Context {
        let seed: Option<[u8; 32]> = seed.map(|s| Sha256::digest(s).into());
        let rng = match seed {
            Some(seed) => ChaCha20Rng::from_seed(seed),
            None => rand::make_rng(),
        };
        Context { rng, seed, now }
    }

    /// In deterministic mode, reseed from the current seed, a label and
    /// `data` (the command name, the input message), so that one `--seed`
    /// reused for every step of a script still gives each step its own
    /// values (no tag, branch or key repeats across different inputs).
    /// Without a seed this does nothing.
    pub fn mix(&mut self, label: &str, data: &[u8]) {
        if let Some(seed) = &mut self.seed {
            let mut h = Sha256::new();
            h.update(*seed);
            h.update((label.len() as u64).to_be_bytes());
            h.update(label.as_bytes());
            h.update(data);
            *seed = h.finalize().into();
            self.rng = ChaCha20Rng::from_seed(*seed);
        }
    }

    /// [`Context::mix`] with data that is made only in deterministic mode
    /// (a whole message, on a hot path).
    pub fn mix_with(&mut self, label: &str, data: impl FnOnce() -> Vec<u8>) {
        if self.seed.is_some() {
            self.mix(label, &data());
        }
    }

    /// A context for one piece of work of a long-running server: its own
    /// generator (drawn from this one in deterministic mode, so a seeded
    /// server is reproducible message by message; else fresh from the
    /// system), the same clock.
    pub fn fork(&mut self) -> Context {
        let seed = self.seed.is_some().then(|| self.bytes(32));
        Context::new(seed.as_deref(), self.now)
    }

    /// Whether a seed or a fixed clock is in force.
    pub fn is_deterministic(&self) -> bool {
        self.seed.is_some() || self.now.is_some()
    }

    /// The cryptographically secure generator (seeded in deterministic mode).
    pub fn rng(&mut self) -> &mut ChaCha20Rng {
        &mut self.rng
    }

    /// The current time, or the fixed `--now`.
    pub fn now(&self) -> OffsetDateTime {
        self.now.unwrap_or_else(OffsetDateTime::now_utc)
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = vec![0u8; n];
        self.rng.fill_bytes(&mut out);
        out
    }

    /// `n` random bytes as lower-case hex (tags, branches, Call-IDs).
    pub fn token(&mut self, n: usize) -> String {
        hex::encode(self.bytes(n))
    }
}

/// A time as RFC 3339 in whole seconds (`2026-01-01T00:00:32Z`), the
/// offset kept as given: how reports and the session store write times.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_values_other_seed_other_values() {
        let mut a = Context::new(Some(b"\x01\x02"), None);
        let mut b = Context::new(Some(b"\x01\x02"), None);
        let mut c = Context::new(Some(b"\x01\x03"), None);
        let (ta, tb, tc) = (a.token(16), b.token(16), c.token(16));
        assert_eq!(ta, tb);
        assert_ne!(ta, tc);
        assert!(a.is_deterministic());
        assert!(!Context::new(None, None).is_deterministic());
    }

    #[test]
    fn mixing_separates_streams_deterministically() {
        let mut a = Context::new(Some(b"s"), None);
        let mut b = Context::new(Some(b"s"), None);
        a.mix("input", b"one");
        b.mix("input", b"two");
        assert_ne!(a.token(8), b.token(8));
        let mut c = Context::new(Some(b"s"), None);
        c.mix("input", b"one");
        let mut a2 = Context::new(Some(b"s"), None);
        a2.mix("input", b"one");
        assert_eq!(c.token(8), a2.token(8));
    }

    #[test]
    fn mix_with_is_mix_and_builds_nothing_when_random() {
        let mut a = Context::new(Some(b"s"), None);
        let mut b = Context::new(Some(b"s"), None);
        a.mix("relay", b"message");
        b.mix_with("relay", || b"message".to_vec());
        assert_eq!(a.token(8), b.token(8));
        let mut random = Context::new(None, None);
        random.mix_with("relay", || panic!("built outside deterministic mode"));
    }
}
