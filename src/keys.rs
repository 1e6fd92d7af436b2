//! Key material: identities and certificates ([`identity`]), pre-shared
//! key files and the demo PKI.
//!
//! PSK file (YAML; the format everywhere a PSK is read or written):
//!
//! ```yaml
//! id: alice-proxy-a        # UTF-8 bytes = KEKRecipientInfo kekid.keyIdentifier
//! key: 0123...cdef         # 128-, 192- or 256-bit AES key in hex
//! uri: sip:proxy-a.a.example.com   # who holds it (for Proxy-Inspect-Body)
//! ```

mod backend;
pub mod crl;
mod demo;
pub mod generate;
pub mod identity;
pub mod mlkem;
pub mod password;
pub(crate) mod pem;
pub mod private;
pub mod trust;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::ErrorClass;
pub use demo::{DEMO_DOMAINS, DEMO_PARTIES, generate_demo};
pub use identity::{Cert, Identity};
pub use password::Password;
pub use private::{Backend, PrivateKey};

/// Problems with key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key or certificate file that cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// Generated key material that cannot be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A PSK file that does not read as one.
    #[error("{path} is not a PSK file: {reason}")]
    BadPsk {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate that cannot be used.
    #[error("{path}: unusable certificate: {reason}")]
    BadCert {
        /// Where it came from.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A CRL file that cannot be used.
    #[error("{path}: unusable CRL: {reason}")]
    BadCrl {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An identity (key + certificate) that cannot be used.
    #[error("{path}: unusable identity: {reason}")]
    BadIdentity {
        /// The identity directory or key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Generating key material failed.
    #[error("key generation failed: {0}")]
    Generate(String),
    /// A password file that does not read as one.
    #[error("{path} is not a password file: {reason}")]
    BadPassword {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// What was asked of key generation cannot be done as given.
    #[error("{0}")]
    Input(String),
    /// A passphrase-protected key (encrypted PKCS#8 or PKCS#12) and no
    /// passphrase to open it with.
    #[error("{path}: the private key is passphrase-protected and no passphrase was given")]
    NeedKeyPassword {
        /// The key file or bundle.
        path: PathBuf,
    },
    /// A certificate request that cannot be used.
    #[error("{path}: unusable certificate request: {reason}")]
    BadCsr {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl KeyError {
    /// What kind of failure it is: reading or writing a key file, or key
    /// material that cannot be used (configuration).
    pub fn class(&self) -> ErrorClass {
        match self {
            KeyError::Read { .. } | KeyError::Write { .. } => ErrorClass::Io,
            _ => ErrorClass::Config,
        }
    }
}

/// A pre-shared key: KEKIdentifier, AES key-encryption key, and its holder.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk {
    /// The KEKIdentifier as text: its UTF-8 bytes go on the wire, or, as
    /// `hex:0a1b...` (what `inspect` prints for one that is not printable),
    /// the bytes that hex gives (see [`Psk::id_bytes`]).
    pub id: String,
    /// 16, 24 or 32 bytes (wiped when dropped).
    pub key: Zeroizing<Vec<u8>>,
    /// The SIP URI of the party holding the key, if known.
    pub uri: Option<String>,
}

impl std::fmt::Debug for Psk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Psk")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .field("uri", &self.uri)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PskFile {
    id: String,
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uri: Option<String>,
}

impl Psk {
    /// Parse a PSK file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Psk, KeyError> {
        let bad = |reason: String| KeyError::BadPsk {
            path: path.to_owned(),
            reason,
        };
        let file: PskFile = crate::yaml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if file.id.is_empty() {
            return Err(bad("empty id".into()));
        }
        if let Some(h) = file.id.strip_prefix("hex:") {
            match hex::decode(h) {
                Ok(b) if !b.is_empty() => {}
                _ => {
                    return Err(bad(format!(
                        "id {:?}: after `hex:` give the identifier's bytes as hex digits",
                        file.id
                    )));
                }
            }
        }
        let key = Zeroizing::new(
            hex::decode(file.key.trim()).map_err(|e| bad(format!("key is not hex: {e}")))?,
        );
        if ![16, 24, 32].contains(&key.len()) {
            return Err(bad(format!(
                "key is {} bytes; AES key wrap needs 16, 24 or 32",
                key.len()
            )));
        }
        if let Some(uri) = &file.uri
            && !(uri.starts_with("sip:") || uri.starts_with("sips:"))
        {
            return Err(bad(format!("uri {uri:?} is not a sip: or sips: URI")));
        }
        Ok(Psk {
            id: file.id,
            key,
            uri: file.uri,
        })
    }

    /// The KEKIdentifier's bytes on the wire: the decoded hex of a
    /// `hex:` id (checked when the file was read), else the id's UTF-8.
    pub fn id_bytes(&self) -> Vec<u8> {
        self.id
            .strip_prefix("hex:")
            .and_then(|h| hex::decode(h).ok())
            .unwrap_or_else(|| self.id.as_bytes().to_vec())
    }

    /// The bundled demo PSK (`keys/psk/alice-proxy-a.yaml`): published,
    /// so its file mode is no secret's.
    pub fn is_demo(&self) -> bool {
        self.id == "alice-proxy-a" && self.uri.as_deref() == Some("sip:proxy-a.a.example.com")
    }

    /// A warning when the PSK file at `path` is readable by group or
    /// other, as for a private key (not for the bundled demo PSK).
    pub fn file_warning(&self, path: &Path) -> Option<String> {
        let mode = identity::group_or_other_readable(path)?;
        (!self.is_demo()).then(|| {
            format!(
                "PSK file {} is readable by group/other (mode {mode:o}); run chmod 600 on it",
                path.display()
            )
        })
    }

    /// Read a PSK file.
    pub fn load(path: &Path) -> Result<Psk, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Psk::parse(&text, path)
    }

    /// The PSK file text.
    pub fn to_yaml(&self) -> String {
        let file = PskFile {
            id: self.id.clone(),
            key: hex::encode(&self.key),
            uri: self.uri.clone(),
        };
        // Serializing three strings cannot fail.
        crate::yaml::to_string(&file).unwrap_or_default()
    }
}

/// The demo identity `name` of the repository's `keys/` (unit tests).
#[cfg(test)]
pub(crate) fn demo_identity(name: &str) -> Identity {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("keys")
        .join(name);
    Identity::load_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psk_file_round_trip_and_errors() {
        let p = Path::new("x.yaml");
        let psk = Psk {
            id: "k1".into(),
            key: Zeroizing::new(vec![7; 32]),
            uri: Some("sip:proxy-a.a.example.com".into()),
        };
        assert_eq!(Psk::parse(&psk.to_yaml(), p).unwrap(), psk);
        for bad in [
            "id: k\nkey: zz\n",
            "id: k\nkey: 0011\n",
            "key: 00\n",
            "id: k\nkey: 00112233445566778899aabbccddeeff\nuri: http://x\n",
        ] {
            assert!(
                matches!(Psk::parse(bad, p), Err(KeyError::BadPsk { .. })),
                "{bad}"
            );
        }
        assert!(!format!("{psk:?}").contains("0707"));
    }
}
