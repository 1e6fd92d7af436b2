//! SignedData: parse, describe and verify arbitrary bytes (as the content
//! and as a detached signature over a fixed content), with BER read as DER;
//! the same bytes as a CRL, and any CRL carried checked against a demo path.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sipseal::envelope::ber;
use sipseal::envelope::signed::Signed;
use sipseal::keys::Cert;
use sipseal::keys::crl::{Crl, check_revocation};

/// alice and her CA: a path to check CRLs against.
static PATH: LazyLock<Vec<Cert>> = LazyLock::new(|| {
    let load = |p: &str| Cert::load(std::path::Path::new(p)).expect("the demo keys");
    vec![
        load(concat!(env!("CARGO_MANIFEST_DIR"), "/../keys/alice/cert.pem")),
        load(concat!(env!("CARGO_MANIFEST_DIR"), "/../keys/ca/a.example.com/cert.pem")),
    ]
});

fuzz_target!(|data: &[u8]| {
    let _ = ber::to_der(data);
    let at = time::OffsetDateTime::UNIX_EPOCH;
    if let Ok(crl) = Crl::from_der(data, "fuzz") {
        let _ = crl.describe();
        let _ = crl.revoked();
        let _ = check_revocation(&PATH, &[&crl], at, true);
    }
    if let Ok(s) = Signed::parse(data) {
        let _ = s.signers();
        let _ = s.verify(None);
        let _ = s.verify(Some(b"content"));
        for r in &s.revocation {
            let _ = r.describe();
        }
        let _ = check_revocation(&PATH, &s.crls(), at, false);
    }
});
