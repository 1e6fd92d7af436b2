//! Relay admission (docs/SPEC.md §3.4): the originator imposture check and the
//! connectivity policy, each read from a small YAML file.
//!
//! Bindings (who may send from where), AOR → the addresses its registered
//! contacts use; a source is `HOST[:PORT]` as given to `--received-from`:
//!
//! ```yaml
//! sip:alice@a.example.com: [192.0.2.10, "a.example.com:5060"]
//! sip:carol@a.example.com: [192.0.2.30]
//! ```
//!
//! Connectivity policy (who may reach whom), an allow-list of From AOR →
//! To AOR patterns (`*` matches any run of characters, `?` one):
//!
//! ```yaml
//! allow:
//!   - from: "sip:*@a.example.com"
//!     to: "sip:*@b.example.com"
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::sip::route_security::same_addr;

/// A file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct PolicyError {
    /// The file.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

impl PolicyError {
    /// A policy file that cannot be used is configuration.
    pub fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Config
    }
}

/// Why a request fails the imposture check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// No binding is registered for the AOR.
    #[error("no binding is registered for {0}")]
    Unbound(String),
    /// The AOR is bound elsewhere.
    #[error("{aor} is bound to {bound}, but the request came from {from}")]
    Elsewhere {
        /// The From AOR.
        aor: String,
        /// Its registered addresses.
        bound: String,
        /// Where the request came from.
        from: String,
    },
}

/// A pattern of the allow-list that is not a valid glob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pattern {pattern:?}: {reason}")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

fn read_yaml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, PolicyError> {
    let err = |reason: String| PolicyError {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    crate::yaml::from_str(&text).map_err(|e| err(e.to_string()))
}

/// The registered bindings: AOR → source addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bindings(BTreeMap<String, Vec<String>>);

impl Bindings {
    /// Read a bindings file.
    pub fn load(path: &Path) -> Result<Bindings, PolicyError> {
        let map: BTreeMap<String, Vec<String>> = read_yaml(path)?;
        Ok(Bindings(
            map.into_iter()
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v))
                .collect(),
        ))
    }

    /// From bindings in memory (tests, the demo).
    pub fn from_map(map: BTreeMap<String, Vec<String>>) -> Bindings {
        Bindings(
            map.into_iter()
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v))
                .collect(),
        )
    }

    /// The bindings as a map (AOR, lower case → source addresses).
    pub fn into_map(self) -> BTreeMap<String, Vec<String>> {
        self.0
    }

    /// `Ok` when `aor` is bound to `source`; else why not.
    pub fn check(&self, aor: &str, source: &str) -> Result<(), BindingError> {
        match self.0.get(&aor.trim().to_ascii_lowercase()) {
            None => Err(BindingError::Unbound(aor.to_owned())),
            Some(addrs) if addrs.iter().any(|a| same_addr(a, source)) => Ok(()),
            Some(addrs) => Err(BindingError::Elsewhere {
                aor: aor.to_owned(),
                bound: addrs.join(", "),
                from: source.to_owned(),
            }),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    allow: Vec<RuleFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    from: String,
    to: String,
}

/// The connectivity allow-list.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<(glob::Pattern, glob::Pattern)>,
}

impl Policy {
    /// Read a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let file: PolicyFile = read_yaml(path)?;
        Policy::from_rules(file.allow.iter().map(|r| (r.from.as_str(), r.to.as_str()))).map_err(
            |e| PolicyError {
                path: path.display().to_string(),
                reason: e.to_string(),
            },
        )
    }

    /// From (from, to) patterns.
    pub fn from_rules<'a>(
        rules: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Policy, PatternError> {
        let pattern = |p: &str| {
            glob::Pattern::new(&p.trim().to_ascii_lowercase()).map_err(|e| PatternError {
                pattern: p.to_owned(),
                reason: e.to_string(),
            })
        };
        let rules = rules
            .into_iter()
            .map(|(f, t)| Ok((pattern(f)?, pattern(t)?)))
            .collect::<Result<Vec<_>, PatternError>>()?;
        Ok(Policy { rules })
    }

    /// Whether `from` may reach `to`.
    pub fn allows(&self, from: &str, to: &str) -> bool {
        let (from, to) = (
            from.trim().to_ascii_lowercase(),
            to.trim().to_ascii_lowercase(),
        );
        self.rules
            .iter()
            .any(|(f, t)| f.matches(&from) && t.matches(&to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_and_policy() {
        let b = Bindings::from_map(BTreeMap::from([(
            "sip:Alice@a.example.com".to_owned(),
            vec!["192.0.2.10".to_owned(), "a.example.com:5060".to_owned()],
        )]));
        b.check("sip:alice@a.example.com", "192.0.2.10:5060")
            .unwrap();
        b.check("sip:alice@a.example.com", "A.example.com").unwrap();
        assert!(
            b.check("sip:alice@a.example.com", "192.0.2.66")
                .unwrap_err()
                .to_string()
                .contains("bound to")
        );
        assert!(
            b.check("sip:mallory@a.example.com", "192.0.2.10")
                .unwrap_err()
                .to_string()
                .contains("no binding")
        );

        let p = Policy::from_rules([("sip:*@a.example.com", "sip:*@b.example.com")]).unwrap();
        assert!(p.allows("sip:alice@a.example.com", "sip:bob@b.example.com"));
        assert!(!p.allows("sip:alice@a.example.com", "sip:carol@a.example.com"));
        assert!(!p.allows("sip:bob@b.example.com", "sip:alice@a.example.com"));
        assert!(Policy::from_rules([("sip:[", "x")]).is_err());
    }
}
