//! Record signing and verification: a round trip for every key type
//! rustls signs with, and every tampering refused — signature, bytes,
//! chain, identity, cluster, CA, revocation.

#![allow(clippy::unwrap_used)] // Tests: a panic is a failed test.

mod common;

use std::time::SystemTime;

use common::*;
use phimon_gossip::NodeId;
use phimon_transport::tls::{IdentityPolicy, NodeTls, TlsFiles, TrustMaterial};
use phimon_transport::{CredentialError, CredentialVerifier, RecordSigner, Signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn files(dir: &std::path::Path, id: &str) -> TlsFiles {
    TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{id}.pem")),
        key: dir.join(format!("{id}.key")),
        crl: None,
    }
}

fn trust(dir: &std::path::Path, cluster: &str) -> std::sync::Arc<TrustMaterial> {
    let tls = NodeTls::load(&files(dir, "node-a"), &IdentityPolicy::new(cluster), None);
    match tls {
        Ok(t) => t.trust().clone(),
        Err(_) => std::sync::Arc::new(
            TrustMaterial::from_pem(
                &std::fs::read(dir.join("ca.pem")).unwrap(),
                None,
                IdentityPolicy::new(cluster),
                &dir.join("ca.pem"),
                None,
            )
            .unwrap(),
        ),
    }
}

/// A signer for a certificate of `id` with `key`, issued by the dev CA.
fn signer_with(dir: &std::path::Path, id: &str, key: &rcgen::KeyPair) -> RecordSigner {
    let sans = vec![
        rcgen::SanType::DnsName(id.try_into().unwrap()),
        rcgen::SanType::URI(format!("phimon://{CLUSTER}/{id}").try_into().unwrap()),
    ];
    let pem = issue_raw(dir, sans, key);
    let chain = vec![CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
    RecordSigner::new(&key, chain, NodeId::from(id)).unwrap()
}

#[test]
fn every_key_type_round_trips_and_tampering_is_refused() {
    let dir = pki(&["node-a"]);
    let verifier = CredentialVerifier::new(trust(dir.path(), CLUSTER));
    let rsa = rcgen::KeyPair::from_pem(include_str!("data/rsa-2048.key")).unwrap();
    let keys = [
        (
            "P-256",
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
            0x0403,
        ),
        (
            "P-384",
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap(),
            0x0503,
        ),
        (
            "Ed25519",
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap(),
            0x0807,
        ),
        ("RSA-2048", rsa, 0x0804),
    ];
    let record = b"node-k gen 7 v 42 alive".to_vec();
    let now = SystemTime::now();
    let mut creds = Vec::new();
    for (what, key, scheme) in &keys {
        let id = format!("node-{}", what.to_lowercase().replace('-', ""));
        let signer = signer_with(dir.path(), &id, key);
        assert_eq!(signer.scheme(), *scheme, "{what}");
        let sig = signer.sign(&record).unwrap();
        let cred = verifier.verify_chain(signer.chain(), now).unwrap();
        assert_eq!(cred.node_id, NodeId::from(id.as_str()), "{what}");
        assert!(cred.not_after > now);
        cred.verify(&record, &sig).unwrap();

        // Other bytes, a flipped signature bit, another scheme: refused.
        let mut other = record.clone();
        other[0] ^= 1;
        assert_eq!(
            cred.verify(&other, &sig),
            Err(CredentialError::BadSignature),
            "{what}"
        );
        let mut flipped = sig.clone();
        let last = flipped.bytes.len() - 1;
        flipped.bytes[last] ^= 1;
        assert_eq!(
            cred.verify(&record, &flipped),
            Err(CredentialError::BadSignature),
            "{what}"
        );
        let wrong_scheme = Signature {
            scheme: if *scheme == 0x0807 { 0x0403 } else { 0x0807 },
            ..sig.clone()
        };
        assert!(
            matches!(
                cred.verify(&record, &wrong_scheme),
                Err(CredentialError::SchemeMismatch { .. })
            ),
            "{what}"
        );
        // A flipped bit anywhere in the certificate breaks the chain.
        let mut der = signer.chain()[0].to_vec();
        let mid = der.len() / 2;
        der[mid] ^= 0x10;
        assert!(verifier.verify_chain(&[der], now).is_err(), "{what}");
        creds.push((cred, sig));
    }
    // One node's signature under another node's certificate: refused, so
    // a relay cannot re-attribute a record.
    let (cred_a, _) = &creds[0];
    let (_, sig_b) = &creds[1];
    assert!(cred_a.verify(&record, sig_b).is_err());
    assert!(matches!(
        verifier.verify_chain::<Vec<u8>>(&[], now),
        Err(CredentialError::EmptyChain)
    ));
}

#[test]
fn chains_of_another_ca_cluster_or_a_revoked_certificate_are_refused() {
    let dir = pki(&["node-a", "node-b"]);
    let tls_a = NodeTls::load(
        &files(dir.path(), "node-a"),
        &IdentityPolicy::new(CLUSTER),
        Some("node-a"),
    )
    .unwrap();
    let signer = RecordSigner::from_tls(&tls_a).unwrap();
    assert_eq!(signer.node_id(), &NodeId::from("node-a"));
    let now = SystemTime::now();

    // The same CA, but the verifier is in another cluster.
    let staging = CredentialVerifier::new(trust(dir.path(), "staging"));
    let err = staging.verify_chain(signer.chain(), now).unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");

    // Another CA.
    let other = pki(&["node-a"]);
    let foreign = CredentialVerifier::new(trust(other.path(), CLUSTER));
    assert!(foreign.verify_chain(signer.chain(), now).is_err());

    // Expired at the time given.
    let ours = CredentialVerifier::new(tls_a.trust().clone());
    let later = now + 400 * DAY;
    assert!(ours.verify_chain(signer.chain(), later).is_err());

    // Revoked: swapping in trust material with a CRL (what a reload does to
    // the transport's verifier) refuses the chain from then on.
    let cred = ours.verify_chain(signer.chain(), now).unwrap();
    let sig = signer.sign(b"r").unwrap();
    cred.verify(b"r", &sig).unwrap();
    let crl = revocation_list(
        dir.path(),
        &std::fs::read_to_string(dir.path().join("node-a.pem")).unwrap(),
    );
    let with_crl = TrustMaterial::from_pem(
        &std::fs::read(dir.path().join("ca.pem")).unwrap(),
        Some(crl.as_bytes()),
        IdentityPolicy::new(CLUSTER),
        &dir.path().join("ca.pem"),
        None,
    )
    .unwrap();
    ours.set_trust(std::sync::Arc::new(with_crl));
    let err = ours.verify_chain(signer.chain(), now).unwrap_err();
    assert!(err.to_string().to_lowercase().contains("revoked"), "{err}");
}

/// A CRL of the dev CA in `dir` revoking the certificate `pem`.
fn revocation_list(dir: &std::path::Path, pem: &str) -> String {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
    let now = SystemTime::now();
    rcgen::CertificateRevocationListParams {
        this_update: (now - std::time::Duration::from_secs(60)).into(),
        next_update: (now + DAY).into(),
        crl_number: rcgen::SerialNumber::from_slice(&[1]),
        issuing_distribution_point: None,
        revoked_certs: vec![rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from_slice(x.raw_serial()),
            revocation_time: now.into(),
            reason_code: None,
            invalidity_date: None,
        }],
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&issuer(dir))
    .unwrap()
    .pem()
    .unwrap()
}

#[tokio::test]
async fn the_transports_verifier_follows_reloads() {
    let dir = pki(&["node-a", "node-b"]);
    let b_pem = std::fs::read_to_string(dir.path().join("node-b.pem")).unwrap();
    let b_chain = vec![CertificateDer::from_pem_slice(b_pem.as_bytes()).unwrap()];
    let crl_path = dir.path().join("ca.crl");
    // A CRL revoking a certificate nobody uses.
    let unused = ca(dir.path()).issue("node-u", CLUSTER, DAY).unwrap();
    std::fs::write(&crl_path, revocation_list(dir.path(), &unused.cert_pem)).unwrap();
    let (a, _rx) = phimon_transport::Transport::bind(phimon_transport::TransportConfig {
        crl_pem_path: Some(crl_path.clone()),
        ..config(dir.path(), "node-a")
    })
    .unwrap();
    let verifier = a.credential_verifier();
    let now = SystemTime::now();
    assert_eq!(
        verifier.verify_chain(&b_chain, now).unwrap().node_id,
        NodeId::from("node-b")
    );
    std::fs::write(&crl_path, revocation_list(dir.path(), &b_pem)).unwrap();
    assert!(a.reload_certs_if_changed().unwrap());
    assert!(verifier.verify_chain(&b_chain, now).is_err());
    // The signer signs with node-a's key, verifiable by anyone holding
    // the CA.
    let signer = a.record_signer();
    let sig = signer.sign(b"record").unwrap();
    verifier
        .verify_chain(signer.chain(), now)
        .unwrap()
        .verify(b"record", &sig)
        .unwrap();
}
