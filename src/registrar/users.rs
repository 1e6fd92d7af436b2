//! The registrar's credential file: HA1 values per realm and user, never
//! passwords (`sipseal registrar passwd`).
//!
//! ```yaml
//! version: 1
//! realms:
//!   example.com:
//!     alice:                       # the Digest username: the AOR's user part
//!       aor: sip:alice@example.com
//!       ha1:
//!         SHA-512-256: 5b1f...
//!         SHA-256: 9e3a...
//!         MD5: 0c1d...             # only when set with --allow-md5
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::digest::DigestAlgorithm;
use crate::keys::KeyError;

/// One user's credentials in a realm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The address of record the user may register.
    pub aor: String,
    /// HA1 per Digest algorithm token (`SHA-256`, `SHA-512-256`, `MD5`).
    pub ha1: BTreeMap<String, String>,
}

impl User {
    /// The stored HA1 for `alg`, if one was set.
    pub fn ha1(&self, alg: DigestAlgorithm) -> Option<&str> {
        self.ha1.get(alg.token()).map(String::as_str)
    }
}

/// The credential file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Users {
    /// The format version (1).
    pub version: u32,
    /// Realm → username → credentials.
    pub realms: BTreeMap<String, BTreeMap<String, User>>,
}

fn bad(path: &Path, reason: impl ToString) -> KeyError {
    KeyError::BadPassword {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// The Digest username of an AOR: its user part (`sip:alice@example.com`
/// → `alice`), or `None` for a URI without one.
pub fn username_of(aor: &str) -> Option<&str> {
    let rest = aor
        .strip_prefix("sips:")
        .or_else(|| aor.strip_prefix("sip:"))?;
    let (user, _) = rest.split_once('@')?;
    let user = user.split(';').next()?;
    (!user.is_empty()).then_some(user)
}

impl Users {
    /// Read a credential file (none yet: empty).
    pub fn load(path: &Path) -> Result<Users, KeyError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let users: Users = crate::yaml::from_str(&text).map_err(|e| bad(path, e))?;
                if users.version != 1 {
                    return Err(bad(
                        path,
                        format!("version {} (sipseal reads 1)", users.version),
                    ));
                }
                Ok(users)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Users {
                version: 1,
                realms: BTreeMap::new(),
            }),
            Err(source) => Err(KeyError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Write it atomically, mode 0600.
    pub fn save(&self, path: &Path) -> Result<PathBuf, KeyError> {
        let text = crate::yaml::to_string(self).map_err(|e| bad(path, e))?;
        crate::fsio::write_atomic(path, text.as_bytes(), true).map_err(|source| {
            KeyError::Write {
                path: path.to_owned(),
                source,
            }
        })?;
        Ok(path.to_owned())
    }

    /// Add or change `aor`'s password in `realm`: the HA1 of every RFC
    /// 8760 algorithm, and MD5's too when `md5`. Returns the username.
    pub fn set(
        &mut self,
        realm: &str,
        aor: &str,
        password: &str,
        md5: bool,
    ) -> Result<String, KeyError> {
        let username = username_of(aor).ok_or_else(|| {
            KeyError::Input(format!(
                "{aor:?} is not an address of record: give sip:user@domain"
            ))
        })?;
        if password.is_empty() {
            return Err(KeyError::Input("an empty password".into()));
        }
        let mut ha1 = BTreeMap::new();
        for alg in DigestAlgorithm::ALL {
            if alg == DigestAlgorithm::Md5 && !md5 {
                continue;
            }
            ha1.insert(alg.token().to_owned(), alg.ha1(username, realm, password));
        }
        self.version = 1;
        self.realms.entry(realm.to_owned()).or_default().insert(
            username.to_owned(),
            User {
                aor: aor.to_owned(),
                ha1,
            },
        );
        Ok(username.to_owned())
    }

    /// The credentials of `username` in `realm`.
    pub fn get(&self, realm: &str, username: &str) -> Option<&User> {
        self.realms.get(realm)?.get(username)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_become_ha1_values_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.yaml");
        let mut users = Users::load(&path).unwrap();
        assert_eq!(
            users
                .set("example.com", "sip:alice@example.com", "pw", false)
                .unwrap(),
            "alice"
        );
        users
            .set("example.com", "sip:bob@example.com", "pw2", true)
            .unwrap();
        users.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("pw"), "{text}");
        let back = Users::load(&path).unwrap();
        assert_eq!(back, users);
        let alice = back.get("example.com", "alice").unwrap();
        assert_eq!(
            alice.ha1(DigestAlgorithm::Sha256),
            Some(
                DigestAlgorithm::Sha256
                    .ha1("alice", "example.com", "pw")
                    .as_str()
            )
        );
        assert!(alice.ha1(DigestAlgorithm::Md5).is_none());
        assert!(
            back.get("example.com", "bob")
                .unwrap()
                .ha1(DigestAlgorithm::Md5)
                .is_some()
        );
        assert!(back.get("other.example", "alice").is_none());
        assert!(
            users
                .set("example.com", "sip:example.com", "pw", false)
                .is_err()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
