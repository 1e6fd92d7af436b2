//! Flags naming key material, shared by several commands: whom to seal for
//! (`--peer`, `--disclose`) and what to open with (`--identity`, `--key`
//! + `--cert`, `--psk`).

use std::path::{Path, PathBuf};

use clap::Args;
use time::OffsetDateTime;

use super::error::Error;
use super::io::read_message;
use crate::envelope::{ContentCipher, Recipient, RecipientKey, RsaPadding, SealOptions};
use crate::keys::trust::check_issued;
use crate::keys::{Cert, Identity, Psk};
use crate::relay::undecipherable_cert;
use crate::sealing::SealSpec;
use crate::sip::disclosure::Access;

/// Whom to seal for, and how.
#[derive(Debug, Args, Default)]
pub struct RecipientArgs {
    /// The far-end peer's certificate (PEM or DER); repeatable.
    #[arg(long, value_name = "CERT", global = true)]
    pub peer: Vec<PathBuf>,
    /// Also disclose to this relay: its certificate, or `psk:FILE` for a
    /// pre-shared key. Adds a RecipientInfo and a Proxy-Inspect-Body
    /// header naming it (certificate SAN URI, or the PSK file's `uri`).
    /// Repeatable.
    #[arg(long, value_name = "CERT|psk:FILE", global = true)]
    pub disclose: Vec<String>,
    /// Name a relay in a Proxy-Inspect-Body without a RecipientInfo (its
    /// certificate is not known yet): it answers 496 with its certificate,
    /// for --add-recipient-from. Repeatable.
    #[arg(long, value_name = "URI", global = true)]
    pub designate: Vec<String>,
    /// Also disclose to the relay whose certificate came in this 496 Proxy
    /// Undecipherable response (its application/pkix-cert body). The
    /// certificate must be issued by a --trust anchor and valid now. Repeatable.
    #[arg(long, value_name = "496.sip", global = true, requires = "trust")]
    pub add_recipient_from: Vec<PathBuf>,
    /// Trust anchors (PEM/DER file or directory) for --add-recipient-from.
    #[arg(long, value_name = "PEM|DIR", global = true)]
    pub trust: Option<PathBuf>,
    /// What the disclosed relays may do: read, or modify and re-seal.
    #[arg(long, value_enum, default_value_t = Access::Read, global = true)]
    pub access: Access,
    /// Content cipher: GCM gives AuthEnvelopedData, CBC EnvelopedData
    /// (legacy) [default: aes256-gcm].
    #[arg(long, value_enum, global = true)]
    pub cipher: Option<ContentCipher>,
    /// RSA key transport padding for certificate recipients.
    #[arg(long, value_enum, default_value_t = RsaPadding::Oaep, global = true)]
    pub rsa_padding: RsaPadding,
}

impl RecipientArgs {
    /// Whether any recipient was named.
    pub fn any(&self) -> bool {
        !self.peer.is_empty()
            || !self.disclose.is_empty()
            || !self.designate.is_empty()
            || !self.add_recipient_from.is_empty()
    }

    /// Load the certificates and PSKs into a seal specification; `now`
    /// decides whether a certificate from a 496 is valid.
    pub fn spec(&self, now: OffsetDateTime) -> Result<SealSpec, Error> {
        let mut peers = Vec::new();
        for p in &self.peer {
            peers.push(Recipient::Cert(Box::new(load_recipient_cert(p)?)));
        }
        let mut disclose = Vec::new();
        for d in &self.disclose {
            disclose.push(match d.strip_prefix("psk:") {
                Some(file) => Recipient::Psk(Psk::load(Path::new(file))?),
                None => Recipient::Cert(Box::new(load_recipient_cert(Path::new(d))?)),
            });
        }
        if let Some(trust) = &self.trust {
            let anchors = Cert::load_tree(trust)?;
            for file in &self.add_recipient_from {
                let name = file.display().to_string();
                let msg = read_message(file)?;
                let cert = undecipherable_cert(&msg, &name)
                    .map_err(|e| Error::usage(format!("{name}: {e}"), UNDECIPHERABLE_HINT))?;
                let anchor =
                    check_issued(&cert, &anchors, now).map_err(|err| Error::Untrusted {
                        name: name.clone(),
                        err,
                    })?;
                eprintln!(
                    "adding {} from {name} (issued by {}, valid now)",
                    cert.name(),
                    anchor.subject()
                );
                cert.rsa_public_key()?;
                disclose.push(Recipient::Cert(Box::new(cert)));
            }
        }
        for uri in &self.designate {
            if !(uri.starts_with("sip:") || uri.starts_with("sips:")) {
                return Err(Error::usage(
                    format!("--designate {uri}: not a SIP URI"),
                    "name the relay by its SIP URI, e.g. --designate sip:proxy-b.b.example.com",
                ));
            }
        }
        if peers.is_empty() && disclose.is_empty() {
            return Err(Error::usage(
                "no recipients",
                "name the far end with --peer CERT and relays with --disclose CERT|psk:FILE",
            ));
        }
        Ok(SealSpec {
            peers,
            disclose,
            designate: self.designate.clone(),
            access: self.access,
            options: SealOptions {
                cipher: self.cipher.unwrap_or_default(),
                padding: self.rsa_padding,
            },
            signer: None,
            scheme: Default::default(),
        })
    }
}

fn load_recipient_cert(path: &Path) -> Result<Cert, Error> {
    let cert = Cert::load(path)?;
    // Fail now, with the file named, rather than halfway through sealing.
    cert.rsa_public_key()?;
    Ok(cert)
}

/// What to open with.
#[derive(Debug, Args, Default)]
pub struct KeyArgs {
    /// An identity directory (cert.pem + key.pem); repeatable.
    #[arg(long, value_name = "DIR")]
    pub identity: Vec<PathBuf>,
    /// A private key file (PKCS#8 or PKCS#1, PEM or DER), paired in order with --cert.
    #[arg(long, value_name = "KEY", requires = "cert")]
    pub key: Vec<PathBuf>,
    /// The certificate of the --key at the same position.
    #[arg(long, value_name = "CERT", requires = "key")]
    pub cert: Vec<PathBuf>,
    /// A pre-shared key file (YAML: id, key, uri); repeatable.
    #[arg(long, value_name = "FILE")]
    pub psk: Vec<PathBuf>,
}

/// Loaded key material.
#[derive(Debug, Default)]
pub struct Keyring {
    /// Identities, in the order given (directories first, then --key/--cert pairs).
    pub identities: Vec<Identity>,
    /// PSKs, in the order given.
    pub psks: Vec<Psk>,
}

impl KeyArgs {
    /// Whether any key was named.
    pub fn any(&self) -> bool {
        !self.identity.is_empty() || !self.key.is_empty() || !self.psk.is_empty()
    }

    /// Load everything named; warnings (e.g. key file permissions) go to stderr.
    pub fn load(&self) -> Result<Keyring, Error> {
        if self.key.len() != self.cert.len() {
            return Err(Error::usage(
                format!("{} --key but {} --cert", self.key.len(), self.cert.len()),
                "give --key and --cert in pairs, each key followed by its certificate",
            ));
        }
        let mut ring = Keyring::default();
        for dir in &self.identity {
            ring.identities.push(Identity::load_dir(dir)?);
        }
        for (k, c) in self.key.iter().zip(&self.cert) {
            ring.identities.push(Identity::load_pair(k, c)?);
        }
        for p in &self.psk {
            ring.psks.push(Psk::load(p)?);
        }
        for id in &ring.identities {
            for w in &id.warnings {
                eprintln!("warning: {w}");
            }
        }
        Ok(ring)
    }
}

impl Keyring {
    /// The keys to try, PSKs first (a symmetric unwrap needs no private-key
    /// operation), then identities in the order given.
    pub fn recipient_keys(&self) -> Vec<RecipientKey<'_>> {
        let mut keys: Vec<RecipientKey<'_>> = self.psks.iter().map(RecipientKey::Psk).collect();
        keys.extend(self.identities.iter().map(|id| RecipientKey::Rsa {
            cert: &id.cert,
            key: id,
        }));
        keys
    }

    /// Whether nothing was loaded.
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty() && self.psks.is_empty()
    }
}

const UNDECIPHERABLE_HINT: &str = "give the 496 Proxy Undecipherable response a relay answered with (`sipseal proxy` writes it on exit 5)";
