//! Record signing and verification with a node's certificate key (dev
//! certificates: ECDSA P-256), the per-record cost of origin-signed
//! membership.
//!
//! Target (issue 17, Build 1): verification must stay cheap enough that a
//! node verifying every changed record of a 1,000-node fleet spends well
//! under 1 % of a core; the core caches verified chains by hash, so a
//! chain is verified once and each record costs one signature check.
//!
//! Run: `cargo bench -p phimon-transport --bench record`

#![allow(clippy::unwrap_used, missing_docs)] // A benchmark: failing loudly is fine.

use std::time::SystemTime;

use criterion::{Criterion, criterion_group, criterion_main};
use phimon_transport::tls::{IdentityPolicy, NodeTls, TlsFiles, generate_dev_certs};
use phimon_transport::{CredentialVerifier, RecordSigner};

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    generate_dev_certs(dir.path(), "bench", &["node-a".into()], 1).unwrap();
    let files = TlsFiles {
        ca: dir.path().join("ca.pem"),
        cert: dir.path().join("node-a.pem"),
        key: dir.path().join("node-a.key"),
        crl: None,
    };
    let tls = NodeTls::load(&files, &IdentityPolicy::new("bench"), Some("node-a")).unwrap();
    let signer = RecordSigner::from_tls(&tls).unwrap();
    let verifier = CredentialVerifier::new(tls.trust().clone());
    // A record of a node with a few key/values and verdicts.
    let record = vec![0x5a; 300];
    let sig = signer.sign(&record).unwrap();
    let now = SystemTime::now();
    let cred = verifier.verify_chain(signer.chain(), now).unwrap();

    c.bench_function("sign_p256_300B", |b| {
        b.iter(|| signer.sign(&record).unwrap())
    });
    c.bench_function("verify_signature_p256_300B", |b| {
        b.iter(|| cred.verify(&record, &sig).unwrap())
    });
    c.bench_function("verify_chain_p256", |b| {
        b.iter(|| verifier.verify_chain(signer.chain(), now).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
