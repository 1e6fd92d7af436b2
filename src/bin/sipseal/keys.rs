//! `sipseal keys`: key material.

use std::path::PathBuf;

use clap::Subcommand;

use sipseal::context::Context;
use sipseal::keys::generate::{
    self, Ca, IdentityRequest, Issue, KeyType, generate_ca, generate_identity, read_csr, sign_csr,
};
use sipseal::keys::generate_demo;

use crate::error::{Error, Exit};
use crate::io::OutputArgs;

/// `keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a demo PKI (two domain CAs, alice, bob, proxy-a, proxy-b,
    /// carol, trust.pem, a PSK) with fresh RSA-2048 keys. Demo use only.
    Demo {
        /// Directory to write (created if missing; existing files are replaced).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Generate an identity: DIR/key.pem (PKCS#8, mode 0600) and a
    /// self-signed DIR/cert.pem, a certificate from a CA (--ca), or a
    /// request for one (--csr, DIR/csr.pem). The certificate names the URI
    /// in its subjectAltName (and, for a URI without a user part, the host
    /// as a dNSName), allows S/MIME and TLS client and server use, and has
    /// the key usages of its key type. ML-KEM keys (post-quantum
    /// KEMRecipientInfo recipients) cannot sign: they need --ca, and their
    /// certificates allow keyEncipherment and S/MIME only.
    Generate {
        /// The SIP URI of the identity: sip:user@domain for a party,
        /// sip:host for a relay or server.
        #[arg(long, value_name = "URI")]
        uri: String,
        /// Key type.
        #[arg(long = "type", value_enum, default_value = "rsa2048")]
        kind: KeyType,
        /// Directory to write (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Write a certificate request (DIR/csr.pem) instead of a certificate.
        #[arg(long, conflicts_with = "ca")]
        csr: bool,
        /// Issue the certificate from this CA directory (cert.pem, key.pem;
        /// see `keys ca`); DIR/cert.pem then holds the CA's certificate too.
        #[arg(long, value_name = "DIR")]
        ca: Option<PathBuf>,
        /// Further dNSNames for the subjectAltName (repeatable).
        #[arg(long, value_name = "NAME")]
        dns: Vec<String>,
        /// The subject DN, e.g. "CN=alice,O=Example" (default: CN= and the
        /// URI without its scheme).
        #[arg(long, value_name = "DN")]
        subject: Option<String>,
        /// Validity in days, from now (or --now).
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: u32,
        /// Replace an existing DIR/key.pem.
        #[arg(long)]
        force: bool,
    },
    /// Make a CA: DIR/key.pem (mode 0600) and a self-signed DIR/cert.pem
    /// (BasicConstraints CA:true with a path length, keyCertSign, cRLSign).
    Ca {
        /// Its distinguished name, e.g. "CN=Example SIP CA,O=Example".
        #[arg(long, value_name = "DN")]
        name: String,
        /// Key type.
        #[arg(long = "type", value_enum, default_value = "rsa2048")]
        kind: KeyType,
        /// Directory to write (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Validity in days, from now (or --now).
        #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: u32,
        /// How many intermediate CAs may follow it.
        #[arg(long, default_value_t = 0)]
        path_len: u8,
        /// Replace an existing DIR/key.pem.
        #[arg(long)]
        force: bool,
    },
    /// Issue a certificate from a PKCS#10 request (`keys generate --csr`,
    /// `openssl req -new`): its signature must verify with its own key; the
    /// subjectAltName it asks for is kept (or --uri replaces it), and the
    /// key usages follow its key type. Writes the certificate, then the CA's.
    SignCsr {
        /// The request (PEM or DER; - for standard input).
        #[arg(value_name = "CSR|-")]
        csr: PathBuf,
        /// The CA directory (cert.pem, key.pem).
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The SIP URI to certify instead of the request's.
        #[arg(long, value_name = "URI")]
        uri: Option<String>,
        /// Validity in days, from now (or --now).
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: u32,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Write a PSK file (YAML: id, key, uri; mode 0600) with a fresh key.
    Psk {
        /// Who holds the key (the PSK's `uri`, named in Proxy-Inspect-Body).
        #[arg(long, value_name = "URI")]
        uri: String,
        /// The key identifier (KEKRecipientInfo kekid; travels in clear):
        /// text, or hex:0a1b.. for bytes. Default: psk- and 16 random hex digits.
        #[arg(long, value_name = "TEXT|hex:..")]
        id: Option<String>,
        /// Key size.
        #[arg(long, default_value_t = 256, value_name = "128|192|256")]
        bits: u16,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// Run `keys`.
pub fn run(cmd: KeysCommand, ctx: &mut Context) -> Result<Exit, Error> {
    match cmd {
        KeysCommand::Demo { out } => {
            let files = generate_demo(&out, ctx)?;
            eprintln!(
                "wrote {} files under {} (demo keys: never use them for anything real)",
                files.len(),
                out.display()
            );
        }
        KeysCommand::Generate {
            uri,
            kind,
            out,
            csr,
            ca,
            dns,
            subject,
            days,
            force,
        } => {
            let ca = ca.as_deref().map(Ca::load).transpose()?;
            let issue = match (&ca, csr) {
                (Some(ca), _) => Issue::By(ca),
                (None, true) => Issue::Csr,
                (None, false) => Issue::SelfSigned,
            };
            let req = IdentityRequest {
                uri,
                dns,
                kind,
                days,
                subject,
            };
            let files = generate_identity(&req, issue, &out, force, ctx)?;
            say_written(&files, kind);
        }
        KeysCommand::Ca {
            name,
            kind,
            out,
            days,
            path_len,
            force,
        } => {
            let files = generate_ca(&name, kind, days, path_len, &out, force, ctx)?;
            say_written(&files, kind);
        }
        KeysCommand::SignCsr {
            csr,
            ca,
            uri,
            days,
            output,
        } => {
            let ca = Ca::load(&ca)?;
            let bytes = crate::io::read_input(&csr)?;
            let req = read_csr(&bytes, &csr)?;
            let pem = sign_csr(&ca, req, uri.as_deref(), days, ctx)?;
            output.write(pem.as_bytes())?;
        }
        KeysCommand::Psk {
            uri,
            id,
            bits,
            output,
        } => {
            let psk = generate::generate_psk(&uri, id.as_deref(), bits, ctx)?;
            output.write_private(psk.to_yaml().as_bytes())?;
            eprintln!(
                "PSK {} for {uri}: give the same file to both holders, over a safe channel",
                psk.id
            );
        }
    }
    Ok(Exit::Ok)
}

fn say_written(files: &[PathBuf], kind: KeyType) {
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    eprintln!("wrote {} ({} key)", names.join(", "), kind.name());
}
