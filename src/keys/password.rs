//! Passwords for PasswordRecipientInfo (RFC 3211): read from a file, never
//! from the command line (where `ps` and shell history would show it).
//!
//! The file holds either the bare password (its whole text; one trailing
//! line break is not part of it), or YAML like a PSK file:
//!
//! ```yaml
//! password: correct horse battery staple
//! uri: sip:recorder.example.com    # who holds it (for Proxy-Inspect-Body)
//! ```
//!
//! The YAML form is recognised only as a mapping with a `password` key;
//! any other text is a bare password.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use zeroize::Zeroizing;

use super::{KeyError, identity};

/// A password and, in the YAML form, who holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password {
    /// The password's UTF-8 bytes are PBKDF2's input.
    pub secret: Zeroizing<String>,
    /// The SIP URI of its holder (YAML form only).
    pub uri: Option<String>,
    /// The file it came from (for messages).
    pub source: PathBuf,
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Password")
            .field("secret", &"<redacted>")
            .field("uri", &self.uri)
            .field("source", &self.source)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordFile {
    password: String,
    uri: Option<String>,
}

impl Password {
    /// Read a password file.
    pub fn load(path: &Path) -> Result<Password, KeyError> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::Read {
                    path: path.to_owned(),
                    source,
                })?,
            );
        Password::parse(&text, path)
    }

    /// A password from a file's text (see the module documentation).
    pub fn parse(text: &str, path: &Path) -> Result<Password, KeyError> {
        let bad = |reason: &str| KeyError::BadPassword {
            path: path.to_owned(),
            reason: reason.into(),
        };
        let looks_yaml = text
            .lines()
            .any(|l| l.trim_start().starts_with("password:"));
        let (secret, uri) = match crate::yaml::from_str::<PasswordFile>(text) {
            Ok(file) => (Zeroizing::new(file.password), file.uri),
            Err(e) if looks_yaml => {
                return Err(KeyError::BadPassword {
                    path: path.to_owned(),
                    reason: format!("a `password:` line, but not a password file ({e})"),
                });
            }
            Err(_) => {
                let bare = text
                    .strip_suffix("\r\n")
                    .or_else(|| text.strip_suffix('\n'))
                    .unwrap_or(text);
                (Zeroizing::new(bare.to_owned()), None)
            }
        };
        if secret.is_empty() {
            return Err(bad("the password is empty"));
        }
        if let Some(uri) = &uri
            && !(uri.starts_with("sip:") || uri.starts_with("sips:"))
        {
            return Err(bad("uri must be a SIP URI (sip:... or sips:...)"));
        }
        Ok(Password {
            secret,
            uri,
            source: path.to_owned(),
        })
    }

    /// A warning when the file is readable by group or other.
    pub fn file_warning(&self) -> Option<String> {
        let mode = identity::group_or_other_readable(&self.source)?;
        Some(format!(
            "password file {} is readable by group/other (mode {mode:o}); run chmod 600 on it",
            self.source.display()
        ))
    }

    /// For messages: the holder's URI, else the file.
    pub fn describe(&self) -> String {
        match &self.uri {
            Some(uri) => format!("password ({uri})"),
            None => format!("password from {}", self.source.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_and_yaml_forms() {
        let p = Path::new("pw");
        let bare = Password::parse("hunter2\n", p).unwrap();
        assert_eq!(
            (bare.secret.as_str(), bare.uri.as_deref()),
            ("hunter2", None)
        );
        // Only one line break goes; spaces are the password's.
        assert_eq!(
            Password::parse(" a b \r\n\n", p).unwrap().secret.as_str(),
            " a b \r\n"
        );
        let yaml = Password::parse("password: s3cret\nuri: sip:rec.example.com\n", p).unwrap();
        assert_eq!(
            (yaml.secret.as_str(), yaml.uri.as_deref()),
            ("s3cret", Some("sip:rec.example.com"))
        );
        // YAML that is not a password file is a bare password.
        assert_eq!(Password::parse("a: b", p).unwrap().secret.as_str(), "a: b");
        for bad in [
            "",
            "\n",
            "password: x\nuri: http://x\n",
            "password: x\nkey: y\n",
        ] {
            assert!(
                matches!(Password::parse(bad, p), Err(KeyError::BadPassword { .. })),
                "{bad:?}"
            );
        }
        assert!(!format!("{yaml:?}").contains("s3cret"));
    }
}
