//! Flag groups several commands share, and what they load: where state is
//! kept (`--state`, key limits), whom to seal for (`--peer`, `--disclose`,
//! ...), what to open with (`--identity`, `--key` + `--cert`, `--psk`),
//! and who signs inside the envelope (`--sign`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use sipseal::context::Context;
use sipseal::envelope::signed::SignatureScheme;
use sipseal::envelope::{ContentCipher, Recipient, RecipientKey, RsaPadding, SealOptions};
use sipseal::keys::trust::{check_chain, check_encryption_usage, check_validity};
use sipseal::keys::{Cert, Identity, Password, Psk};
use sipseal::sealing::{SealSpec, SealedMessage};
use sipseal::session::{Limits, Recorded, Stored};
use sipseal::sip::Message;
use sipseal::sip::disclosure::Access;
use sipseal::state::FileStore;
use sipseal::ua::{Ua, trusted_relay_cert};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::Error;
use crate::io::read_message;

/// Where state is kept.
#[derive(Debug, Args, Default)]
pub struct StateArgs {
    /// State directory: session keys and pinhole state, one subdirectory
    /// per identity (default: $SIPSEAL_STATE, else $XDG_STATE_HOME/sipseal).
    /// `relay` defaults to $XDG_RUNTIME_DIR/sipseal (tmpfs) when there is
    /// one; `relay` and `registrar` also take redis://HOST:PORT: a store
    /// several processes share.
    #[arg(
        long,
        value_name = "DIR|redis://HOST:PORT",
        env = "SIPSEAL_STATE",
        global = true
    )]
    pub state: Option<PathBuf>,
    /// Session key policy: messages a sender seals under one session key
    /// before it rekeys [default: 100].
    #[arg(long, value_name = "N", global = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_uses: Option<u64>,
    /// Session key policy: age (e.g. 30m, 12h, 3600s) after which a sender
    /// rekeys and receivers refuse the key [default: 24h].
    #[arg(long, value_name = "DURATION", global = true, value_parser = parse_duration)]
    pub max_age: Option<time::Duration>,
    /// How long a replaced or expired session key still opens messages in
    /// flight [default: 32s].
    #[arg(long, value_name = "DURATION", global = true, value_parser = parse_duration)]
    pub grace: Option<time::Duration>,
}

/// `--now` and `--at`: an RFC 3339 time.
pub fn parse_now(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| format!("not an RFC 3339 time ({e}); give e.g. 2026-01-01T00:00:00Z"))
}

/// `30s`, `5m`, `12h`, `1h 30m`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<time::Duration, String> {
    let std = match s.trim().parse::<u64>() {
        Ok(secs) => std::time::Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s.trim())
            .map_err(|e| format!("{e}; give e.g. 90s, 30m or 12h"))?,
    };
    time::Duration::try_from(std).map_err(|e| e.to_string())
}

impl StateArgs {
    /// The file store under the state directory.
    pub fn store(&self) -> Result<FileStore, Error> {
        if let Some(url) = self.redis_url() {
            return Err(Error::usage(
                format!(
                    "--state {url}: only `sipseal relay` and `sipseal registrar` keep their state in Redis"
                ),
                "give a state directory",
            ));
        }
        let root = match &self.state {
            Some(p) => p.clone(),
            // The XDG state directory: $XDG_STATE_HOME/sipseal, else
            // ~/.local/state/sipseal.
            None => dirs::state_dir()
                .or_else(|| dirs::home_dir().map(|h| h.join(".local/state")))
                .ok_or(Error::NoStateDir)?
                .join("sipseal"),
        };
        Ok(FileStore::new(&root))
    }

    /// The registrar's store: a directory, or (with the live features)
    /// Redis, which relays and registrars on several hosts share.
    pub fn registry(
        &self,
    ) -> Result<Box<dyn sipseal::registrar::store::RegistrarStore + Send + Sync>, Error> {
        #[cfg(feature = "live")]
        if let Some(url) = self.redis_url() {
            let store = sipseal::state::RedisStore::open(url).map_err(|e| {
                Error::usage(
                    e.to_string(),
                    "check that redis-server runs there (--state redis://HOST:PORT)",
                )
            })?;
            return Ok(Box::new(store));
        }
        Ok(Box::new(self.store()?))
    }

    /// A user agent on the file store with the key limits given: what
    /// `seal`, `open`, `reply`, `rekey` and `build --seal` run as.
    pub fn user_agent(&self) -> Result<UserAgent, Error> {
        Ok(UserAgent {
            store: self.store()?,
            limits: self.limits(),
        })
    }

    /// The key limits given.
    /// `--state redis://...`, when given.
    pub fn redis_url(&self) -> Option<&str> {
        self.state
            .as_deref()
            .and_then(|p| p.to_str())
            .filter(|s| s.starts_with("redis://"))
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_uses: self.max_uses,
            max_age: self.max_age,
            grace: self.grace,
        }
    }
}

/// A user agent's session keys in the file store, and their limits.
pub struct UserAgent {
    store: FileStore,
    limits: Limits,
}

impl UserAgent {
    /// The workflows.
    pub fn ua(&self) -> Ua<'_> {
        Ua {
            store: &self.store,
            limits: self.limits,
        }
    }

    /// The store, for naming its files in messages.
    pub fn store(&self) -> &FileStore {
        &self.store
    }

    /// Seal `msg` (named `name` in errors) as a full envelope for `spec`;
    /// the sender's session key is recorded, and a key update said.
    pub fn seal(
        &self,
        msg: &Message,
        spec: &SealSpec,
        name: &str,
        ctx: &mut Context,
    ) -> Result<SealedMessage, Error> {
        let sealed = self
            .ua()
            .seal(msg, spec, ctx)
            .map_err(|err| Error::ua(name, err))?;
        say_stored(sealed.stored.as_ref(), &self.limits);
        Ok(sealed.sealed)
    }
}

/// Say on stderr when a key update replaced a stored session key.
pub fn say_stored(stored: Option<&Stored>, limits: &Limits) {
    if let Some(s) = stored
        && s.recorded == Recorded::Replaced
    {
        eprintln!(
            "session key updated for Call-ID {}; the previous key opens messages for {} s more",
            s.call_id,
            limits.policy().grace.whole_seconds()
        );
    }
}

/// A session's keys and whom a full envelope goes to: what the commands
/// that seal in a dialog (or rekey it) take.
#[derive(Debug, Args, Default)]
pub struct SealingArgs {
    /// Recipients for a full envelope (for `reply`, used only when the
    /// session key is due for a rekey: --max-uses, --max-age).
    #[command(flatten)]
    pub recipients: RecipientArgs,
    #[command(flatten)]
    pub state: StateArgs,
}

/// Read a PSK file; a file readable by group or other gets a warning, as
/// a private key does.
/// A password file (`password:FILE`, `--password-file`), warning when
/// others may read it.
pub fn load_password(path: &Path) -> Result<Password, Error> {
    let password = Password::load(path)?;
    if let Some(w) = password.file_warning() {
        eprintln!("warning: {w}");
    }
    Ok(password)
}

pub fn load_psk(path: &Path) -> Result<Psk, Error> {
    let psk = Psk::load(path)?;
    if let Some(w) = psk.file_warning(path) {
        eprintln!("warning: {w}");
    }
    Ok(psk)
}

/// Trust anchors from a file or directory (`--trust`): each anchor that
/// cannot act as one is named in a warning (RFC 5280 §6.1; see
/// `trust::anchor_problem`), never dropped silently.
pub fn load_anchors(path: &Path) -> Result<Vec<Cert>, Error> {
    let (usable, warnings) = sipseal::keys::trust::usable_anchors(Cert::load_tree(path)?);
    for w in warnings {
        eprintln!("warning: {w}");
    }
    Ok(usable)
}

/// Whom to seal for, and how.
#[derive(Debug, Args, Default)]
pub struct RecipientArgs {
    /// The far-end peer's certificate (PEM or DER; RSA: key transport,
    /// EC P-256: key agreement, RFC 5753; ML-KEM: RFC 9629), its AOR
    /// (`sip:bob@b.example.com`, looked up in --certs), or `password:FILE`
    /// for a password (RFC 3211; the file holds it, never the command
    /// line); repeatable.
    #[arg(long, value_name = "CERT|AOR|password:FILE", global = true)]
    pub peer: Vec<PathBuf>,
    /// Also disclose to this relay: its certificate, its SIP URI (looked
    /// up in --certs), `psk:FILE` for a
    /// pre-shared key, or `password:FILE` for a password file in YAML form
    /// (`password`, `uri`). Adds a RecipientInfo and a Proxy-Inspect-Body
    /// header naming it (certificate SAN URI, or the file's `uri`).
    /// Repeatable.
    #[arg(long, value_name = "CERT|URI|psk:FILE|password:FILE", global = true)]
    pub disclose: Vec<String>,
    /// Where recipients named by AOR are looked up: certificate files, a
    /// directory of them (what `certquery --accept` stores), or a
    /// registrar's state directory. Only certificates valid now, not
    /// withdrawn, and chaining to --trust are used. Repeatable.
    #[arg(long, value_name = "FILE|DIR", global = true, requires = "trust")]
    pub certs: Vec<PathBuf>,
    /// With a multipart body: seal each part on its own, this part (its
    /// Content-ID, without angle brackets) for the peer and the --disclose
    /// relays, every other part for the peer alone. Repeatable.
    #[arg(long, value_name = "CID", global = true)]
    pub disclose_part: Vec<String>,
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
    /// Seal for the --disclose relays alone, with no --peer: the far end
    /// will not be able to open the body. Without it, a message with
    /// relays and no peer is refused.
    #[arg(long, global = true, conflicts_with = "peer")]
    pub no_peer: bool,
    /// What the disclosed relays may do: read, or modify and re-seal.
    #[arg(long, value_enum, default_value_t = Access::Read, global = true)]
    pub access: Access,
    /// The disclosed relays may also hand the call's SRTP keys to a
    /// recorder (`purpose=record` in their Proxy-Inspect-Body; `relay
    /// --record DIR`). Without it a relay reads the keys but keeps them.
    #[arg(long, global = true)]
    pub record: bool,
    /// Content cipher: GCM gives AuthEnvelopedData, CBC EnvelopedData
    /// (legacy) [default: aes256-gcm].
    #[arg(long, value_enum, global = true)]
    pub cipher: Option<ContentCipher>,
    /// RSA key transport padding for RSA certificate recipients.
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
        let spec = self.spec_or_none(now)?;
        if spec.peers.is_empty() && spec.disclose.is_empty() {
            return Err(no_recipients());
        }
        if spec.peers.is_empty() && !self.no_peer {
            return Err(Error::usage(
                "no --peer: the far end could not open this message, only the --disclose relays",
                NO_PEER_HINT,
            ));
        }
        Ok(spec)
    }

    /// [`RecipientArgs::spec`], possibly naming no one (`reencrypt`: a
    /// session message it translates needs no recipients).
    pub fn spec_or_none(&self, now: OffsetDateTime) -> Result<SealSpec, Error> {
        // S7: every certificate recipient is valid now and may be sealed
        // to; with --trust it also chains to an anchor.
        let anchors = match &self.trust {
            Some(trust) => Some(load_anchors(trust)?),
            None => None,
        };
        let mut directory: Option<Vec<Cert>> = None;
        let mut by_aor = |aor: &str| -> Result<Recipient, Error> {
            let Some(anchors) = &anchors else {
                return Err(Error::usage(
                    format!("{aor}: a recipient by AOR needs --trust"),
                    "give --certs FILE|DIR and --trust PEM|DIR",
                ));
            };
            if directory.is_none() {
                let mut all = Vec::new();
                for path in &self.certs {
                    all.extend(sipseal::registrar::load_directory(path)?);
                }
                directory = Some(all);
            }
            let certs = directory.as_deref().unwrap_or_default();
            let cert = sipseal::registrar::lookup(certs, aor, now, anchors).ok_or_else(|| {
                Error::usage(
                    format!(
                        "no certificate for {aor} in --certs ({} certificates read) that is valid now, not withdrawn, and chains to --trust",
                        certs.len()
                    ),
                    "fetch it with `sipseal certquery`, or give its file",
                )
            })?;
            cert.recipient_kind()?;
            Ok(Recipient::Cert(Box::new(cert.clone())))
        };
        let is_uri = |s: &str| s.starts_with("sip:") || s.starts_with("sips:");
        let mut peers = Vec::new();
        for p in &self.peer {
            let text = p.to_str().unwrap_or_default();
            peers.push(match text.strip_prefix("password:") {
                Some(file) => Recipient::Password(load_password(Path::new(file))?),
                None if is_uri(text) => by_aor(text)?,
                None => Recipient::Cert(Box::new(load_recipient_cert(p)?)),
            });
        }
        let mut disclose = Vec::new();
        for d in &self.disclose {
            disclose.push(if let Some(file) = d.strip_prefix("psk:") {
                Recipient::Psk(load_psk(Path::new(file))?)
            } else if let Some(file) = d.strip_prefix("password:") {
                Recipient::Password(load_password(Path::new(file))?)
            } else if is_uri(d) {
                by_aor(d)?
            } else {
                Recipient::Cert(Box::new(load_recipient_cert(Path::new(d))?))
            });
        }
        let named: Vec<&Cert> = peers
            .iter()
            .chain(&disclose)
            .filter_map(|r| match r {
                Recipient::Cert(c) => Some(&**c),
                _ => None,
            })
            .collect();
        for cert in &named {
            let checked = check_validity(cert, now)
                .and_then(|()| check_encryption_usage(cert))
                .and_then(|()| match &anchors {
                    Some(a) => check_chain(cert, &[], a).map(|_| ()),
                    None => Ok(()),
                });
            checked.map_err(|err| Error::Recipient {
                name: cert.name(),
                err,
            })?;
        }
        if anchors.is_none() && !named.is_empty() {
            eprintln!(
                "warning: the recipients' certificates were not checked against trust anchors (give --trust PEM|DIR)"
            );
        }
        if let Some(anchors) = anchors {
            for file in &self.add_recipient_from {
                let name = file.display().to_string();
                let msg = read_message(file)?;
                let (cert, anchor) =
                    trusted_relay_cert(&msg, &name, &anchors, now).map_err(|err| {
                        Error::RelayCert {
                            name: name.clone(),
                            err,
                        }
                    })?;
                eprintln!(
                    "adding {} from {name} (issued by {}, valid now)",
                    cert.name(),
                    anchor.subject()
                );
                cert.recipient_kind()?;
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
        Ok(SealSpec {
            peers,
            disclose,
            designate: self.designate.clone(),
            access: self.access,
            record: self.record,
            options: SealOptions {
                cipher: self.cipher.unwrap_or_default(),
                padding: self.rsa_padding,
            },
            signer: None,
            scheme: Default::default(),
            disclose_parts: self.disclose_part.clone(),
        })
    }
}

fn load_recipient_cert(path: &Path) -> Result<Cert, Error> {
    let cert = Cert::load(path)?;
    // Fail now, with the file named, rather than halfway through sealing.
    cert.recipient_kind()?;
    Ok(cert)
}

/// `--key-password-file`, set once from `main`.
static KEY_PASSWORD_FILE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

/// Set `--key-password-file` (once, from `main`).
pub fn set_key_password_file(path: Option<PathBuf>) {
    let _ = KEY_PASSWORD_FILE.set(path);
}

/// The passphrase of the protected key or bundle at `path`: from
/// `--key-password-file`, else asked on the terminal, else refused.
fn key_password(path: &Path) -> Result<zeroize::Zeroizing<String>, Error> {
    use std::io::IsTerminal;
    if let Some(file) = KEY_PASSWORD_FILE.get().and_then(Option::as_ref) {
        let text = read_secret(file)?;
        if let Some(mode) = sipseal::keys::identity::group_or_other_readable(file) {
            eprintln!(
                "warning: passphrase file {} is readable by group/other (mode {mode:o}); run chmod 600 on it",
                file.display()
            );
        }
        return Ok(text);
    }
    if std::io::stdin().is_terminal() {
        let asked = rpassword::prompt_password(format!("passphrase for {}: ", path.display()))
            .map_err(|source| sipseal::keys::KeyError::Read {
                path: "/dev/tty".into(),
                source,
            })?;
        return Ok(zeroize::Zeroizing::new(asked));
    }
    Err(sipseal::keys::KeyError::NeedKeyPassword {
        path: path.to_owned(),
    }
    .into())
}

/// A file holding a secret (a password, a passphrase) alone; one trailing
/// line break (what `echo` and editors add) is not part of it.
pub fn read_secret(path: &Path) -> Result<zeroize::Zeroizing<String>, Error> {
    let bytes = std::fs::read(path).map_err(|source| sipseal::keys::KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut text = zeroize::Zeroizing::new(String::from_utf8(bytes).map_err(|_| {
        Error::usage(
            format!("{}: not UTF-8 text", path.display()),
            "put the secret alone in the file",
        )
    })?);
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

/// A password file (`--password-file`): [`read_secret`], with a warning
/// when group or other may read it, as a private key gets.
pub fn read_password_file(path: &Path) -> Result<zeroize::Zeroizing<String>, Error> {
    let text = read_secret(path)?;
    if let Some(mode) = sipseal::keys::identity::group_or_other_readable(path) {
        eprintln!(
            "warning: password file {} is readable by group/other (mode {mode:o}); run chmod 600 on it",
            path.display()
        );
    }
    Ok(text)
}

/// An identity named on the command line: a directory (cert.pem +
/// key.pem), or a PKCS#12 bundle (a `.p12` or `.pfx` file). A protected
/// key gets its passphrase now, so that a missing one is reported before
/// any work.
pub fn identity_at(path: &Path) -> Result<Identity, Error> {
    let bundle = path.is_file()
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("p12") || e.eq_ignore_ascii_case("pfx"));
    if bundle {
        let password = key_password(path)?;
        return Ok(Identity::load_pkcs12(path, &password)?);
    }
    let id = Identity::load_dir(path)?;
    with_key_password(id)
}

/// The private key in `path`, with its passphrase when it is protected.
pub fn private_key_at(path: &Path) -> Result<sipseal::keys::PrivateKey, Error> {
    let password = if sipseal::keys::identity::key_is_encrypted(path) {
        Some(key_password(path)?)
    } else {
        None
    };
    Ok(sipseal::keys::identity::load_private_key_with(
        path,
        password.as_deref().map(|p| p.as_str()),
    )?)
}

/// `id` with the passphrase of its key file, when the key is protected.
fn with_key_password(mut id: Identity) -> Result<Identity, Error> {
    if sipseal::keys::identity::key_is_encrypted(&id.key_path) {
        let password = key_password(&id.key_path)?;
        id.set_key_password(password);
    }
    Ok(id)
}

/// What to open with.
#[derive(Debug, Args, Default)]
pub struct KeyArgs {
    /// An identity: a directory (cert.pem + key.pem) or a PKCS#12 bundle
    /// (.p12/.pfx); repeatable. Protected keys take --key-password-file.
    #[arg(long, value_name = "DIR|P12")]
    pub identity: Vec<PathBuf>,
    /// A private key file (PKCS#8, also passphrase-protected, or PKCS#1;
    /// PEM or DER), paired in order with --cert.
    #[arg(long, value_name = "KEY", requires = "cert")]
    pub key: Vec<PathBuf>,
    /// The certificate of the --key at the same position.
    #[arg(long, value_name = "CERT", requires = "key")]
    pub cert: Vec<PathBuf>,
    /// A pre-shared key file (YAML: id, key, uri); repeatable.
    #[arg(long, value_name = "FILE")]
    pub psk: Vec<PathBuf>,
    /// A password file (the password alone, or YAML: password, uri) for a
    /// PasswordRecipientInfo; repeatable.
    #[arg(long, value_name = "FILE")]
    pub password_file: Vec<PathBuf>,
}

/// Loaded key material.
#[derive(Debug, Default)]
pub struct Keyring {
    /// Identities, in the order given (directories first, then --key/--cert pairs).
    pub identities: Vec<Identity>,
    /// PSKs, in the order given.
    pub psks: Vec<Psk>,
    /// Passwords, in the order given.
    pub passwords: Vec<Password>,
}

impl KeyArgs {
    /// Whether any key was named.
    pub fn any(&self) -> bool {
        !self.identity.is_empty()
            || !self.key.is_empty()
            || !self.psk.is_empty()
            || !self.password_file.is_empty()
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
            ring.identities.push(identity_at(dir)?);
        }
        for (k, c) in self.key.iter().zip(&self.cert) {
            ring.identities
                .push(with_key_password(Identity::load_pair(k, c)?)?);
        }
        for p in &self.psk {
            ring.psks.push(load_psk(p)?);
        }
        for p in &self.password_file {
            ring.passwords.push(load_password(p)?);
        }
        for id in &ring.identities {
            warn(id);
        }
        Ok(ring)
    }
}

impl Keyring {
    /// The keys to try, PSKs first (a symmetric unwrap needs no private-key
    /// operation), then identities in the order given, then passwords
    /// (PBKDF2 is the slowest).
    pub fn recipient_keys(&self) -> Vec<RecipientKey<'_>> {
        let mut keys: Vec<RecipientKey<'_>> = self.psks.iter().map(RecipientKey::Psk).collect();
        keys.extend(self.identities.iter().map(|id| RecipientKey::Cert {
            cert: &id.cert,
            key: id,
        }));
        keys.extend(self.passwords.iter().map(RecipientKey::Password));
        keys
    }
}

/// The inner signature (sign-then-encrypt) of `seal`.
#[derive(Debug, Args, Default)]
pub struct InnerSignArgs {
    /// Sign the plaintext with this identity (cert.pem + key.pem) before
    /// sealing: an opaque SignedData inside the envelope, so relays can read
    /// the body but not change it undetected (access=read enforced).
    #[arg(long, value_name = "DIR")]
    pub sign: Option<PathBuf>,
    /// Sign with RSASSA-PSS (SHA-256, MGF1-SHA-256, 32-byte salt) instead of PKCS#1 v1.5.
    #[arg(long, requires = "sign")]
    pub pss: bool,
}

impl InnerSignArgs {
    /// The identity to sign with, when --sign was given.
    pub fn signer(&self) -> Result<Option<Arc<Identity>>, Error> {
        match &self.sign {
            None => Ok(None),
            Some(dir) => Ok(Some(Arc::new(load_identity(dir)?))),
        }
    }

    /// The scheme.
    pub fn scheme(&self) -> SignatureScheme {
        scheme(self.pss)
    }
}

/// RSASSA-PSS or PKCS#1 v1.5.
pub fn scheme(pss: bool) -> SignatureScheme {
    if pss {
        SignatureScheme::Pss
    } else {
        SignatureScheme::Pkcs1v15
    }
}

/// Load an identity (a directory or a PKCS#12 bundle), its warnings (key
/// file permissions) to stderr.
pub fn load_identity(dir: &Path) -> Result<Identity, Error> {
    let id = identity_at(dir)?;
    warn(&id);
    Ok(id)
}

fn warn(id: &Identity) {
    for w in &id.warnings {
        eprintln!("warning: {w}");
    }
}

/// Sealing with no one named.
/// The hint when relays are named and the peer is not (the README's
/// text; a test holds them in step).
pub const NO_PEER_HINT: &str = "name the far end with --peer CERT|AOR|password:FILE; if only the relays are meant to read it, say so with --no-peer";

pub fn no_recipients() -> Error {
    Error::usage(
        "no recipients",
        "name the far end with --peer CERT and relays with --disclose CERT|psk:FILE",
    )
}

/// `1048576`, `64K`/`64KiB` (×1024), `1M`/`1MiB` (×1024²).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size; give e.g. 1048576, 64KiB or 1MiB"))?;
    let factor = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1024,
        "m" | "mib" | "mb" => 1024 * 1024,
        _ => return Err(format!("unknown unit {unit:?}; use K/KiB or M/MiB")),
    };
    match n.checked_mul(factor) {
        Some(0) | None => Err(format!("{s:?}: give a size from 1 byte up")),
        Some(v) => Ok(v),
    }
}
