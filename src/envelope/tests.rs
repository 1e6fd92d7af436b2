use std::cell::Cell;
use std::path::Path;

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;

use super::*;

use crate::keys::demo_identity as identity;

fn psk() -> Psk {
    Psk::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("keys/psk/alice-proxy-a.yaml")).unwrap()
}

/// Counts every private-key operation it is asked for.
struct Counting<'a> {
    inner: &'a dyn PrivateKeyOps,
    uses: Cell<usize>,
}

impl PrivateKeyOps for Counting<'_> {
    fn decrypt_key(
        &self,
        scheme: &KeyTransportScheme,
        encrypted: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, crate::keys::KeyError> {
        self.uses.set(self.uses.get() + 1);
        self.inner.decrypt_key(scheme, encrypted)
    }
}

/// `ENTITY` sealed for one identity with the default options.
fn sealed_for(id: &crate::keys::Identity, rng: &mut ChaCha20Rng) -> Vec<u8> {
    let recipients = [Recipient::Cert(Box::new(id.cert.clone()))];
    seal(ENTITY, &recipients, &SealOptions::default(), rng)
        .unwrap()
        .0
}

const ENTITY: &[u8] = b"Content-Type: application/sdp\r\n\r\nv=0\r\n";

#[test]
fn a_non_recipient_never_touches_its_private_key() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let bob = identity("bob");
    let proxy_a = identity("proxy-a");
    let proxy_b = identity("proxy-b");
    let recipients = [
        Recipient::Cert(Box::new(bob.cert.clone())),
        Recipient::Cert(Box::new(proxy_a.cert.clone())),
    ];
    let (der, _) = seal(ENTITY, &recipients, &SealOptions::default(), &mut rng).unwrap();
    let env = Envelope::parse(&der).unwrap();

    let counting = Counting {
        inner: proxy_b.private_key().unwrap(),
        uses: Cell::new(0),
    };
    let keys = [RecipientKey::Cert {
        cert: &proxy_b.cert,
        key: &counting,
    }];
    assert!(matches!(
        env.open(&keys, &mut rng),
        Err(EnvelopeError::NotRecipient)
    ));
    assert_eq!(
        counting.uses.get(),
        0,
        "no private-key operation for a non-recipient"
    );

    // The same wrapper around a recipient's key is used exactly once.
    let counting = Counting {
        inner: proxy_a.private_key().unwrap(),
        uses: Cell::new(0),
    };
    let keys = [RecipientKey::Cert {
        cert: &proxy_a.cert,
        key: &counting,
    }];
    let opened = env.open(&keys, &mut rng).unwrap();
    assert_eq!(&opened.content[..], ENTITY);
    assert_eq!(counting.uses.get(), 1);
}

#[test]
fn first_matching_key_is_used_and_only_that_one() {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let bob = identity("bob");
    let carol = identity("carol");
    let der = sealed_for(&bob, &mut rng);
    let env = Envelope::parse(&der).unwrap();
    let c_carol = Counting {
        inner: carol.private_key().unwrap(),
        uses: Cell::new(0),
    };
    let c_bob = Counting {
        inner: bob.private_key().unwrap(),
        uses: Cell::new(0),
    };
    let keys = [
        RecipientKey::Cert {
            cert: &carol.cert,
            key: &c_carol,
        },
        RecipientKey::Cert {
            cert: &bob.cert,
            key: &c_bob,
        },
    ];
    let opened = env.open(&keys, &mut rng).unwrap();
    assert_eq!(opened.key_index, 1);
    assert_eq!((c_carol.uses.get(), c_bob.uses.get()), (0, 1));
}

#[test]
fn every_recipient_kind_and_cipher_opens() {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let bob = identity("bob");
    let psk = psk();
    for cipher in [
        ContentCipher::Aes256Gcm,
        ContentCipher::Aes128Gcm,
        ContentCipher::Aes256Cbc,
        ContentCipher::Aes128Cbc,
    ] {
        for padding in [RsaPadding::Oaep, RsaPadding::Pkcs1v15] {
            let opts = SealOptions { cipher, padding };
            let recipients = [
                Recipient::Cert(Box::new(bob.cert.clone())),
                Recipient::Psk(psk.clone()),
            ];
            let (der, cek) = seal(ENTITY, &recipients, &opts, &mut rng).unwrap();
            let env = Envelope::parse(&der).unwrap();
            assert_eq!(
                env.kind == EnvelopeKind::AuthEnvelopedData,
                cipher.is_aead()
            );
            assert_eq!(env.version, if cipher.is_aead() { 0 } else { 2 });
            for key in [
                RecipientKey::Cert {
                    cert: &bob.cert,
                    key: bob.private_key().unwrap(),
                },
                RecipientKey::Psk(&psk),
            ] {
                let opened = env.open(&[key], &mut rng).unwrap();
                assert_eq!(&opened.content[..], ENTITY, "{cipher:?} {padding:?}");
                assert_eq!(opened.cek, cek);
            }
        }
    }
}

#[test]
fn a_wrong_key_of_the_right_id_fails_like_a_tampered_tag() {
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let bob = identity("bob");
    let carol = identity("carol");
    for padding in [RsaPadding::Oaep, RsaPadding::Pkcs1v15] {
        let opts = SealOptions {
            cipher: ContentCipher::Aes256Gcm,
            padding,
        };
        let (der, _) = seal(
            ENTITY,
            &[Recipient::Cert(Box::new(bob.cert.clone()))],
            &opts,
            &mut rng,
        )
        .unwrap();
        let env = Envelope::parse(&der).unwrap();
        // bob's certificate (so the rid matches) with carol's private key:
        // the key transport fails, which must look like any content failure.
        let keys = [RecipientKey::Cert {
            cert: &bob.cert,
            key: carol.private_key().unwrap(),
        }];
        let err = env.open(&keys, &mut rng).err().unwrap();
        assert!(matches!(err, EnvelopeError::Decrypt), "{padding:?}: {err}");
    }
    // The same with ML-KEM: bob's certificate, alice's ML-KEM key. The
    // decapsulation rejects implicitly, the unwrap fails, and the failure
    // is the content's.
    let (bob_kem, alice_kem) = (identity("bob-mlkem"), identity("alice-mlkem"));
    let (der, _) = seal(
        ENTITY,
        &[Recipient::Cert(Box::new(bob_kem.cert.clone()))],
        &SealOptions::default(),
        &mut rng,
    )
    .unwrap();
    let keys = [RecipientKey::Cert {
        cert: &bob_kem.cert,
        key: alice_kem.private_key().unwrap(),
    }];
    let err = Envelope::parse(&der)
        .unwrap()
        .open(&keys, &mut rng)
        .err()
        .unwrap();
    assert!(matches!(err, EnvelopeError::Decrypt), "ML-KEM: {err}");
    let mut wrong = psk();
    wrong.key[0] ^= 1;
    let (der, _) = seal(
        ENTITY,
        &[Recipient::Psk(psk())],
        &SealOptions::default(),
        &mut rng,
    )
    .unwrap();
    let err = Envelope::parse(&der)
        .unwrap()
        .open(&[RecipientKey::Psk(&wrong)], &mut rng)
        .err()
        .unwrap();
    assert!(matches!(err, EnvelopeError::Decrypt), "{err}");
}

#[test]
fn no_attributes_and_ski_rids_are_written() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let bob = identity("bob");
    let der = sealed_for(&bob, &mut rng);
    let info = Envelope::parse(&der).unwrap().describe();
    assert_eq!(info.auth_attributes + info.unauth_attributes, 0);
    assert_eq!((info.iv_length, info.tag_length), (12, Some(16)));
    let r = &info.recipients[0];
    assert_eq!(
        r.rid.as_deref(),
        Some(format!("ski:{}", hex::encode(bob.cert.ski().unwrap())).as_str())
    );
    assert!(r.algorithm.contains("sha256"), "{}", r.algorithm);
}

/// Byte ranges of `needle` in `hay` (it must occur exactly once).
fn region(hay: &[u8], needle: &[u8]) -> std::ops::Range<usize> {
    let hits: Vec<usize> = hay
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(hits.len(), 1, "region must be unique");
    hits[0]..hits[0] + needle.len()
}

#[test]
fn flipping_any_byte_of_content_tag_gcm_params_or_wrapped_key_fails() {
    use cms::authenveloped_data::AuthEnvelopedData;
    use cms::content_info::ContentInfo;
    use der::{Decode, Encode};

    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let bob = identity("bob");
    let psk = psk();
    for padding in [RsaPadding::Oaep, RsaPadding::Pkcs1v15] {
        let opts = SealOptions {
            cipher: ContentCipher::Aes256Gcm,
            padding,
        };
        let recipients = [
            Recipient::Cert(Box::new(bob.cert.clone())),
            Recipient::Psk(psk.clone()),
        ];
        let (der, _) = seal(ENTITY, &recipients, &opts, &mut rng).unwrap();
        let ci = ContentInfo::from_der(&der).unwrap();
        let aed: AuthEnvelopedData = ci.content.decode_as().unwrap();
        let eci = &aed.auth_encrypted_content_info;
        let params = eci
            .content_enc_alg
            .parameters
            .as_ref()
            .unwrap()
            .to_der()
            .unwrap();
        let mut regions = vec![
            (
                "encrypted content",
                region(&der, eci.encrypted_content.as_ref().unwrap().as_bytes()),
                None,
            ),
            ("tag", region(&der, aed.mac.as_bytes()), None),
            ("GCM parameters", region(&der, &params), None),
        ];
        for ri in aed.recip_infos.0.iter() {
            match ri {
                RecipientInfo::Ktri(k) => regions.push((
                    "RSA-wrapped key",
                    region(&der, k.enc_key.as_bytes()),
                    Some(0),
                )),
                RecipientInfo::Kekri(k) => regions.push((
                    "AES-wrapped key",
                    region(&der, k.encrypted_key.as_bytes()),
                    Some(1),
                )),
                _ => unreachable!(),
            }
        }
        let keys = [
            RecipientKey::Cert {
                cert: &bob.cert,
                key: bob.private_key().unwrap(),
            },
            RecipientKey::Psk(&psk),
        ];
        let mut flips = 0;
        let expected: usize = regions
            .iter()
            .map(|(_, r, only)| r.len() * if only.is_some() { 1 } else { 2 })
            .sum();
        for (what, range, only) in regions {
            for i in range {
                let mut bad = der.clone();
                bad[i] ^= 0x01;
                // A wrapped key only matters to its own recipient; content,
                // tag and parameters to everyone.
                let which: Vec<usize> = match only {
                    Some(k) => vec![k],
                    None => vec![0, 1],
                };
                for k in which {
                    let key = &keys[k..=k];
                    if let Ok(env) = Envelope::parse(&bad) {
                        let r = env.open(key, &mut rng);
                        assert!(
                            r.is_err(),
                            "{padding:?}: flipping byte {i} of the {what} still opened"
                        );
                    }
                    flips += 1;
                }
            }
        }
        assert_eq!(flips, expected);
        assert!(
            flips > 256 + 40,
            "the RSA and AES wrapped keys are covered: {flips}"
        );
    }
}

#[test]
fn auth_attrs_are_authenticated_as_rfc_5083_says() {
    use cms::authenveloped_data::AuthEnvelopedData;
    use cms::content_info::{CmsVersion, ContentInfo};
    use cms::enveloped_data::EncryptedContentInfo;
    use const_oid::db::{rfc5911, rfc6268};
    use der::asn1::{OctetString, SetOfVec};
    use der::{Any, Encode};
    use x509_cert::attr::Attribute;

    // An AuthEnvelopedData with a content-type authAttr, made by hand the way
    // RFC 5083 §2.2 says: the AAD is the DER of the authAttrs SET OF.
    let mut rng = ChaCha20Rng::seed_from_u64(13);
    let psk = psk();
    let cek = fresh_cek(ContentCipher::Aes256Gcm, &mut rng);
    let attr = Attribute {
        oid: rfc6268::ID_CONTENT_TYPE,
        values: SetOfVec::try_from(vec![Any::encode_from(&rfc5911::ID_DATA).unwrap()]).unwrap(),
    };
    let attrs: SetOfVec<Attribute> = SetOfVec::try_from(vec![attr]).unwrap();
    let aad = attrs.to_der().unwrap();
    let params = ContentParams::fresh(ContentCipher::Aes256Gcm, &mut rng);
    let (ct, tag) = params.encrypt(&cek, &aad, ENTITY).unwrap();
    let build = |attrs: SetOfVec<Attribute>| {
        let aed = AuthEnvelopedData {
            version: CmsVersion::V0,
            originator_info: None,
            recip_infos: vec![super::kekri::kekri_for(&psk, &cek).unwrap()]
                .try_into()
                .unwrap(),
            auth_encrypted_content_info: EncryptedContentInfo {
                content_type: rfc5911::ID_DATA,
                content_enc_alg: params.algorithm().unwrap(),
                encrypted_content: Some(OctetString::new(ct.clone()).unwrap()),
            },
            auth_attrs: Some(attrs),
            mac: OctetString::new(tag.clone()).unwrap(),
            unauth_attrs: None,
        };
        ContentInfo {
            content_type: rfc5911::ID_CT_AUTH_ENVELOPED_DATA,
            content: Any::encode_from(&aed).unwrap(),
        }
        .to_der()
        .unwrap()
    };
    let env = Envelope::parse(&build(attrs)).unwrap();
    assert_eq!(env.describe().auth_attributes, 1);
    let opened = env.open(&[RecipientKey::Psk(&psk)], &mut rng).unwrap();
    assert_eq!(&opened.content[..], ENTITY);

    // The same ciphertext and tag with a different attribute must fail.
    let other = Attribute {
        oid: rfc6268::ID_CONTENT_TYPE,
        values: SetOfVec::try_from(vec![Any::encode_from(&rfc5911::ID_SIGNED_DATA).unwrap()])
            .unwrap(),
    };
    let env = Envelope::parse(&build(SetOfVec::try_from(vec![other]).unwrap())).unwrap();
    assert!(matches!(
        env.open(&[RecipientKey::Psk(&psk)], &mut rng),
        Err(EnvelopeError::Decrypt)
    ));
}

/// A key whose certificate is not at hand (a registrant opening the 200
/// that brings its new certificate) opens what was sealed for that
/// certificate, RSA or P-256, named by the SubjectKeyIdentifier computed
/// from its public key alone; another key's identifier finds nothing,
/// and the right identifier with the wrong key fails like a wrong key.
#[test]
fn a_key_known_by_its_ski_opens_what_was_sealed_for_its_certificate() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    for (mine, other) in [("bob", "carol"), ("bob-ec", "carol-ec")] {
        let (id, other) = (identity(mine), identity(other));
        let der = sealed_for(&id, &mut rng);
        let env = Envelope::parse(&der).unwrap();
        let spki = id.cert.cert.tbs_certificate().subject_public_key_info();
        let ski = recipient::ski_of(spki).unwrap();
        assert_eq!(
            Some(ski.clone()),
            id.cert.ski(),
            "{mine}: RFC 5280 method 1"
        );
        let key = id.private_key().unwrap();
        let opened = env
            .open(&[RecipientKey::Own { ski: &ski, key }], &mut rng)
            .unwrap();
        assert_eq!(&opened.content[..], ENTITY, "{mine}");
        let theirs =
            recipient::ski_of(other.cert.cert.tbs_certificate().subject_public_key_info()).unwrap();
        let wrong_id = env.open(&[RecipientKey::Own { ski: &theirs, key }], &mut rng);
        assert!(
            matches!(wrong_id, Err(EnvelopeError::NotRecipient)),
            "{mine}"
        );
        let wrong_key = env.open(
            &[RecipientKey::Own {
                ski: &ski,
                key: other.private_key().unwrap(),
            }],
            &mut rng,
        );
        assert!(wrong_key.is_err(), "{mine}");
    }
}
