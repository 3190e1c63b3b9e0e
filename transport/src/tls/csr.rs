//! A node's private key and certificate signing request (PKCS#10), for a
//! CA that signs requests instead of handing out keys: cert-manager's
//! `CertificateRequest`, Vault's `pki/sign`, step-ca's `step ca sign`
//! (`phimon certs csr`).
//!
//! The key is generated here and never leaves the node; only the request,
//! which holds the public key, goes to the CA. The request asks for what
//! [`DevCa::issue`](super::DevCa::issue) puts into a node certificate: the
//! node id as DNS SAN and common name, the URI SAN
//! `phimon://<cluster>/<node-id>`, the `digitalSignature` key usage and
//! both `serverAuth` and `clientAuth` extended key usages, on an ECDSA
//! P-256 key. The CA decides the validity.

use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType,
};

use super::cluster_uri;
use super::devcerts::{
    CertGenError, create_private_dir, generate_err, validate_cluster_name, validate_node_id,
    write_file,
};

/// A fresh private key and the signing request for it, both PEM.
#[derive(Clone)]
pub struct NodeCsr {
    /// The request (`CERTIFICATE REQUEST` PEM), to send to the CA.
    pub csr_pem: String,
    /// Its private key (PKCS#8 PEM). Keep it secret.
    pub key_pem: String,
}

impl std::fmt::Debug for NodeCsr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCsr")
            .field("csr_pem", &self.csr_pem)
            .finish_non_exhaustive()
    }
}

/// Generates a key and a signing request for node `node_id` of `cluster`
/// (see the module docs for what it asks for). The names are checked as
/// by `phimon certs`: a request the cluster would refuse is never made.
pub fn node_csr(node_id: &str, cluster: &str) -> Result<NodeCsr, CertGenError> {
    validate_node_id(node_id)?;
    validate_cluster_name(cluster)?;
    let what = |w: &str| format!("{w} for node {node_id}");
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![
        SanType::DnsName(node_id.try_into().map_err(generate_err(what("DNS SAN")))?),
        SanType::URI(
            cluster_uri(cluster, node_id)
                .try_into()
                .map_err(generate_err(what("URI SAN")))?,
        ),
    ];
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, node_id);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Every node is both a QUIC server and a QUIC client. cert-manager
    // requires a CertificateRequest's `usages` to equal these exactly:
    // digital signature, server auth, client auth.
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().map_err(generate_err(what("key")))?;
    let csr = params
        .serialize_request(&key)
        .map_err(generate_err(what("signing request")))?;
    Ok(NodeCsr {
        csr_pem: csr
            .pem()
            .map_err(generate_err(what("signing request PEM")))?,
        key_pem: key.serialize_pem(),
    })
}

/// What [`write_node_csr`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrReport {
    /// Path of the private key (`<id>.key`, mode 0600).
    pub key: PathBuf,
    /// Path of the signing request (`<id>.csr`).
    pub csr: PathBuf,
}

/// Writes a fresh key and signing request for `node_id` of `cluster` into
/// `dir` (created with mode 0700 if missing) as `<id>.key` (mode 0600) and
/// `<id>.csr`, each atomically, key first. Existing files are replaced:
/// each call is a new key.
pub fn write_node_csr(dir: &Path, cluster: &str, node_id: &str) -> Result<CsrReport, CertGenError> {
    let req = node_csr(node_id, cluster)?;
    create_private_dir(dir)?;
    let key = dir.join(format!("{node_id}.key"));
    let csr = dir.join(format!("{node_id}.csr"));
    // Key first: a request on disk always has its key beside it.
    write_file(&key, req.key_pem.as_bytes(), 0o600)?;
    write_file(&csr, req.csr_pem.as_bytes(), 0o644)?;
    Ok(CsrReport { key, csr })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{DevCa, IdentityPolicy, NodeTls, TlsFiles};
    use rcgen::{CertificateSigningRequestParams, PublicKeyData};
    use std::time::{Duration, SystemTime};

    #[test]
    fn the_request_carries_exactly_the_node_identity_and_usages() {
        let req = node_csr("node-a", "prod").unwrap();
        // from_pem verifies the request's signature with its public key.
        let parsed = CertificateSigningRequestParams::from_pem(&req.csr_pem).unwrap();
        assert_eq!(
            parsed.params.subject_alt_names,
            vec![
                SanType::DnsName("node-a".try_into().unwrap()),
                SanType::URI("phimon://prod/node-a".try_into().unwrap()),
            ]
        );
        assert_eq!(
            parsed.params.key_usages,
            vec![KeyUsagePurpose::DigitalSignature]
        );
        assert_eq!(
            parsed.params.extended_key_usages,
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth
            ]
        );
        assert!(!matches!(parsed.params.is_ca, rcgen::IsCa::Ca(_)));
        // The request's public key is the key's.
        let key = KeyPair::from_pem(&req.key_pem).unwrap();
        assert_eq!(parsed.public_key.der_bytes(), key.der_bytes());
        assert_eq!(key.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
    }

    #[test]
    fn a_certificate_signed_from_the_request_loads_with_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let report = write_node_csr(dir.path(), "prod", "node-a").unwrap();
        assert_eq!(report.key, dir.path().join("node-a.key"));
        assert_eq!(report.csr, dir.path().join("node-a.csr"));
        // A CA signs the request as cert-manager's CA issuer would: the
        // requested names and usages, its own dates.
        let ca = DevCa::generate("test", Duration::from_secs(86_400)).unwrap();
        let ca_key = KeyPair::from_pem(ca.key_pem()).unwrap();
        let issuer = rcgen::Issuer::from_ca_cert_pem(ca.cert_pem(), ca_key).unwrap();
        let csr_pem = std::fs::read_to_string(&report.csr).unwrap();
        let mut req = CertificateSigningRequestParams::from_pem(&csr_pem).unwrap();
        let now = SystemTime::now();
        req.params.not_before = (now - Duration::from_secs(60)).into();
        req.params.not_after = (now + Duration::from_secs(3600)).into();
        let cert = req.signed_by(&issuer).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
        std::fs::write(dir.path().join("node-a.pem"), cert.pem()).unwrap();
        let files = TlsFiles {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("node-a.pem"),
            key: report.key.clone(),
            crl: None,
        };
        // NodeTls::load checks the key matches and the identity is ours.
        let tls = NodeTls::load(&files, &IdentityPolicy::new("prod"), Some("node-a")).unwrap();
        assert_eq!(tls.identity().node_id, "node-a");
        assert_eq!(tls.identity().cluster.as_deref(), Some("prod"));
        // A second request is a new key.
        let key_before = std::fs::read(&report.key).unwrap();
        write_node_csr(dir.path(), "prod", "node-a").unwrap();
        assert_ne!(std::fs::read(&report.key).unwrap(), key_before);
    }

    #[cfg(unix)]
    #[test]
    fn the_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("tls");
        let report = write_node_csr(&out, "prod", "n1").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&report.key), 0o600);
        assert_eq!(mode(&out), 0o700);
    }

    #[test]
    fn invalid_names_are_refused_before_any_file_is_written() {
        let dir = tempfile::tempdir().unwrap();
        for id in ["", "ca", "a/b", "../x", "10.0.0.1", "-a", "a b", "é"] {
            let err = write_node_csr(dir.path(), "prod", id).unwrap_err();
            assert!(
                matches!(err, CertGenError::InvalidNodeId { .. }),
                "{id:?}: {err}"
            );
            assert!(err.to_string().contains("invalid node id"), "{err}");
        }
        let err = write_node_csr(dir.path(), "a/b", "node-a").unwrap_err();
        assert!(matches!(err, CertGenError::InvalidCluster { .. }), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
