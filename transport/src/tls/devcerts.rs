//! Development certificates: a cluster CA and one certificate per node, so
//! a newcomer can start a secure cluster with one command (`phimon certs`).
//!
//! Node certificates carry the node id as DNS SAN and `CN`, the URI SAN
//! `phimon://<cluster>/<node-id>`, both `serverAuth` and `clientAuth`
//! extended key usages, and an ECDSA P-256 key. This is a development PKI:
//! the CA key sits in a file beside the certificates. Production should use
//! a real PKI (see `docs/security.md`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};

use rustls::pki_types::pem::PemObject;

use phimon_gossip::NodeId;

use super::cluster_uri;

/// Validity of a newly created CA: never shorter than this, so re-issuing
/// node certificates for years does not require a new CA.
const MIN_CA_DAYS: u32 = 3650;

/// Longest accepted `--days` (100 years): beyond that `SystemTime`
/// arithmetic and X.509 dates stop being meaningful.
const MAX_DAYS: u32 = 36_500;

/// Certificates are back-dated by this much so a peer whose clock runs a
/// little behind does not see them as not yet valid.
const BACKDATE: Duration = Duration::from_secs(3600);

const DAY: Duration = Duration::from_secs(86_400);

/// Errors creating development certificates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertGenError {
    /// A node id that cannot be a DNS SAN or a file name.
    #[error("invalid node id {id:?}: {reason}")]
    InvalidNodeId {
        /// The id given.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A cluster name that cannot go into the `phimon://` URI SAN.
    #[error("invalid cluster name {name:?}: {reason}")]
    InvalidCluster {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A validity outside 1..=36500 days.
    #[error("invalid validity of {days} days (want 1..={MAX_DAYS})")]
    InvalidDays {
        /// The number given.
        days: u32,
    },
    /// No node to issue a certificate for.
    #[error("no node ids given")]
    NoNodes,
    /// Reading or writing a file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("write", "read", "create directory").
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// Only one of `ca.pem` / `ca.key` exists, so the CA cannot be reused
    /// and must not be silently replaced.
    #[error(
        "{present} exists but {missing} does not: restore it, or remove {present} to create a new CA (all node certificates must then be re-issued)"
    )]
    CaIncomplete {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// The existing CA certificate or key cannot be parsed.
    #[error("cannot reuse the CA in {path}: {reason}")]
    CaUnusable {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rcgen failed to build or sign a certificate.
    #[error("generating {what}: {source}")]
    Generate {
        /// Which certificate or key.
        what: String,
        /// rcgen's error.
        source: rcgen::Error,
    },
}

pub(super) fn generate_err(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> CertGenError {
    let what = what.into();
    move |source| CertGenError::Generate { what, source }
}

/// Checks that `id` can be a node id: the rule of [`NodeId::check`]
/// (ASCII letters, digits, `-`, `_`, `.`; 1..=253 bytes; no `.` or `-` at
/// either end), not an IP address (it becomes the DNS SAN), and not `ca`
/// (whose files would collide with the CA's).
pub fn validate_node_id(id: &str) -> Result<(), CertGenError> {
    let bad = |reason: String| CertGenError::InvalidNodeId {
        id: id.to_owned(),
        reason,
    };
    NodeId::check(id).map_err(|e| bad(e.to_string()))?;
    if id.parse::<std::net::IpAddr>().is_ok() {
        return Err(bad(
            "an IP address cannot be a node id (it must be a DNS name)".into(),
        ));
    }
    if rustls::pki_types::DnsName::try_from(id).is_err() {
        return Err(bad("not a valid DNS name".into()));
    }
    if id.eq_ignore_ascii_case("ca") {
        return Err(bad(
            "reserved: its files would overwrite ca.pem/ca.key".into()
        ));
    }
    Ok(())
}

/// Checks that `name` can be a cluster name: 1 to 63 letters, digits, `-`,
/// `_` or `.` (it becomes the authority of the `phimon://` URI SAN).
pub fn validate_cluster_name(name: &str) -> Result<(), CertGenError> {
    let bad = |reason: &str| CertGenError::InvalidCluster {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() || name.len() > 63 {
        return Err(bad("must be 1 to 63 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(bad("only letters, digits, '-', '_' and '.' are allowed"));
    }
    Ok(())
}

fn validate_days(days: u32) -> Result<Duration, CertGenError> {
    if days == 0 || days > MAX_DAYS {
        return Err(CertGenError::InvalidDays { days });
    }
    Ok(DAY * days)
}

/// A node certificate and its fresh private key, both PEM.
#[derive(Clone)]
pub struct IssuedCert {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM). Keep it secret.
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// A development certificate authority: its certificate, its key, and the
/// rcgen issuer that signs node certificates with them.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
    not_after: SystemTime,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // A positive INTEGER without a leading zero byte: DER requires minimal
    // encoding, and some parsers reject negative serials.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

impl DevCa {
    /// Creates a new CA (ECDSA P-256, self-signed, path length 0) valid
    /// from an hour ago for `validity`. `label` goes into its common name.
    pub fn generate(label: &str, validity: Duration) -> Result<DevCa, CertGenError> {
        let now = SystemTime::now();
        let key = KeyPair::generate().map_err(generate_err("CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            format!("phimon development CA ({label})"),
        );
        params
            .distinguished_name
            .push(DnType::OrganizationName, "phimon");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + validity).into();
        params.serial_number = Some(random_serial());
        let cert = params
            .self_signed(&key)
            .map_err(generate_err("CA certificate"))?;
        let key_pem = key.serialize_pem();
        Ok(DevCa {
            cert_pem: cert.pem(),
            key_pem,
            not_after: now + validity,
            issuer: Issuer::new(params, key),
        })
    }

    /// Reuses an existing CA from its PEM certificate and key. Checks that
    /// the certificate is a CA, is still valid, and matches the key; `path`
    /// names the certificate in errors.
    pub fn from_pem(cert_pem: &str, key_pem: &str, path: &Path) -> Result<DevCa, CertGenError> {
        let unusable = |reason: String| CertGenError::CaUnusable {
            path: path.to_owned(),
            reason,
        };
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| unusable(format!("the CA key cannot be parsed: {e}")))?;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| unusable(format!("not a PEM certificate: {e}")))?;
        let (_, x509) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| unusable(format!("not an X.509 certificate: {e}")))?;
        if !x509.is_ca() {
            return Err(unusable(
                "the certificate is not a CA (basicConstraints CA:FALSE)".into(),
            ));
        }
        if x509.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(unusable(
                "the CA key does not match the CA certificate".into(),
            ));
        }
        let ts = x509.validity().not_after.timestamp();
        let not_after =
            SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(ts).unwrap_or(0));
        if not_after <= SystemTime::now() {
            return Err(unusable(format!(
                "the CA expired at {} (remove ca.pem and ca.key to create a new one)",
                x509.validity().not_after
            )));
        }
        let issuer = Issuer::from_ca_cert_der(&der, key)
            .map_err(|e| unusable(format!("rcgen cannot use it as issuer: {e}")))?;
        Ok(DevCa {
            issuer,
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            not_after,
        })
    }

    /// The CA certificate (PEM), to distribute as `ca.pem`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key (PEM). Keep it secret.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// When the CA certificate expires.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Issues a certificate for `node_id` in `cluster`, valid from an hour
    /// ago for `validity` (cut at the CA's own expiry, after which the chain
    /// would not verify anyway).
    pub fn issue(
        &self,
        node_id: &str,
        cluster: &str,
        validity: Duration,
    ) -> Result<IssuedCert, CertGenError> {
        let now = SystemTime::now();
        let not_after = (now + validity).min(self.not_after);
        self.issue_with_validity(node_id, Some(cluster), now - BACKDATE, not_after)
    }

    /// Issues a certificate with explicit dates and an optional cluster
    /// (`None` leaves out the `phimon://` URI SAN). Tests use it for expired
    /// certificates; dates are not checked against each other or the CA.
    pub fn issue_with_validity(
        &self,
        node_id: &str,
        cluster: Option<&str>,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<IssuedCert, CertGenError> {
        validate_node_id(node_id)?;
        let what = |w: &str| format!("{w} for node {node_id}");
        let mut sans = vec![SanType::DnsName(
            node_id.try_into().map_err(generate_err(what("DNS SAN")))?,
        )];
        if let Some(cluster) = cluster {
            validate_cluster_name(cluster)?;
            sans.push(SanType::URI(
                cluster_uri(cluster, node_id)
                    .try_into()
                    .map_err(generate_err(what("URI SAN")))?,
            ));
        }
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, node_id);
        if let Some(cluster) = cluster {
            params.distinguished_name.push(
                DnType::OrganizationName,
                format!("phimon cluster {cluster}"),
            );
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Every node is both a QUIC server and a QUIC client.
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.serial_number = Some(random_serial());
        let key = KeyPair::generate().map_err(generate_err(what("key")))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(generate_err(what("certificate")))?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// What [`generate_dev_certs`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevCertsReport {
    /// The existing CA in the directory was reused (else a new one was
    /// created).
    pub ca_reused: bool,
    /// Path of the CA certificate.
    pub ca_cert: PathBuf,
    /// Path of the CA key.
    pub ca_key: PathBuf,
    /// Per node: id, certificate path, key path.
    pub nodes: Vec<(String, PathBuf, PathBuf)>,
}

/// Writes a development CA and per-node certificates into `dir`:
/// `ca.pem`, `ca.key`, and `<id>.pem` / `<id>.key` per node id, each node
/// certificate valid for `days` days for cluster `cluster`. An existing CA
/// in `dir` is reused (node certificates from earlier runs stay valid);
/// existing node files are replaced. Keys are written with mode 0600, via a
/// temporary file and a rename so a reader never sees half a key.
pub fn generate_dev_certs(
    dir: &Path,
    cluster: &str,
    nodes: &[String],
    days: u32,
) -> Result<DevCertsReport, CertGenError> {
    validate_cluster_name(cluster)?;
    let validity = validate_days(days)?;
    if nodes.is_empty() {
        return Err(CertGenError::NoNodes);
    }
    let mut ids: Vec<&str> = Vec::new();
    for id in nodes {
        validate_node_id(id)?;
        if !ids.contains(&id.as_str()) {
            ids.push(id);
        }
    }
    create_private_dir(dir)?;
    let ca_cert = dir.join("ca.pem");
    let ca_key = dir.join("ca.key");
    let (ca, ca_reused) = match (ca_cert.exists(), ca_key.exists()) {
        (true, true) => {
            let cert = read_string(&ca_cert)?;
            let key = read_string(&ca_key)?;
            (DevCa::from_pem(&cert, &key, &ca_cert)?, true)
        }
        (false, false) => {
            let ca = DevCa::generate(cluster, validity.max(DAY * MIN_CA_DAYS))?;
            // Key first: a crash in between leaves a key without a
            // certificate, which the next run reports instead of reusing.
            write_file(&ca_key, ca.key_pem().as_bytes(), 0o600)?;
            write_file(&ca_cert, ca.cert_pem().as_bytes(), 0o644)?;
            (ca, false)
        }
        (true, false) => {
            return Err(CertGenError::CaIncomplete {
                present: ca_cert,
                missing: ca_key,
            });
        }
        (false, true) => {
            return Err(CertGenError::CaIncomplete {
                present: ca_key,
                missing: ca_cert,
            });
        }
    };
    let mut written = Vec::new();
    for id in ids {
        let issued = ca.issue(id, cluster, validity)?;
        let cert_path = dir.join(format!("{id}.pem"));
        let key_path = dir.join(format!("{id}.key"));
        write_file(&key_path, issued.key_pem.as_bytes(), 0o600)?;
        write_file(&cert_path, issued.cert_pem.as_bytes(), 0o644)?;
        written.push((id.to_owned(), cert_path, key_path));
    }
    Ok(DevCertsReport {
        ca_reused,
        ca_cert,
        ca_key,
        nodes: written,
    })
}

fn read_string(path: &Path) -> Result<String, CertGenError> {
    fs::read_to_string(path).map_err(|source| CertGenError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })
}

pub(super) fn create_private_dir(dir: &Path) -> Result<(), CertGenError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        // The directory holds the CA key; existing directories keep their
        // mode (the operator chose it).
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| CertGenError::Io {
        action: "create directory",
        path: dir.to_owned(),
        source,
    })
}

/// Writes `contents` to `path` atomically with permission `mode` (unix).
pub(super) fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertGenError> {
    let io = |source| CertGenError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        // A stale temporary file from a crashed run keeps its old mode
        // through open(); set it explicitly.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{IdentityPolicy, NodeTls, TlsFiles};

    fn files(dir: &Path, id: &str) -> TlsFiles {
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{id}.pem")),
            key: dir.join(format!("{id}.key")),
            crl: None,
        }
    }

    #[test]
    fn generated_certs_load_and_carry_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let report =
            generate_dev_certs(dir.path(), "prod", &["node-a".into(), "node-b".into()], 30)
                .unwrap();
        assert!(!report.ca_reused);
        assert_eq!(report.nodes.len(), 2);
        let tls = NodeTls::load(
            &files(dir.path(), "node-a"),
            &IdentityPolicy::new("prod"),
            Some("node-a"),
        )
        .unwrap();
        assert_eq!(tls.identity().node_id, "node-a");
        assert_eq!(tls.identity().cluster.as_deref(), Some("prod"));
        let days_left = tls
            .not_after()
            .duration_since(SystemTime::now())
            .unwrap()
            .as_secs()
            / 86_400;
        assert!((29..=30).contains(&days_left), "{days_left}");
        // The wrong node id or cluster is refused at load.
        assert!(
            NodeTls::load(
                &files(dir.path(), "node-a"),
                &IdentityPolicy::new("prod"),
                Some("node-b")
            )
            .is_err()
        );
        assert!(
            NodeTls::load(
                &files(dir.path(), "node-a"),
                &IdentityPolicy::new("staging"),
                None
            )
            .is_err()
        );
    }

    #[cfg(unix)]
    #[test]
    fn keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("certs");
        generate_dev_certs(&out, "prod", &["n1".into()], 1).unwrap();
        for name in ["ca.key", "n1.key"] {
            let mode = fs::metadata(out.join(name)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        let mode = fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn existing_ca_is_reused_and_old_certs_stay_valid() {
        let dir = tempfile::tempdir().unwrap();
        generate_dev_certs(dir.path(), "prod", &["n1".into()], 10).unwrap();
        let ca_before = fs::read(dir.path().join("ca.pem")).unwrap();
        let report = generate_dev_certs(dir.path(), "prod", &["n2".into()], 10).unwrap();
        assert!(report.ca_reused);
        assert_eq!(fs::read(dir.path().join("ca.pem")).unwrap(), ca_before);
        let policy = IdentityPolicy::new("prod");
        NodeTls::load(&files(dir.path(), "n1"), &policy, Some("n1")).unwrap();
        NodeTls::load(&files(dir.path(), "n2"), &policy, Some("n2")).unwrap();
    }

    #[test]
    fn half_a_ca_or_a_mismatched_key_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        generate_dev_certs(dir.path(), "prod", &["n1".into()], 10).unwrap();
        // A node key is not the CA key.
        fs::copy(dir.path().join("n1.key"), dir.path().join("ca.key")).unwrap();
        let err = generate_dev_certs(dir.path(), "prod", &["n2".into()], 10).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
        fs::remove_file(dir.path().join("ca.key")).unwrap();
        let err = generate_dev_certs(dir.path(), "prod", &["n2".into()], 10).unwrap_err();
        assert!(matches!(err, CertGenError::CaIncomplete { .. }), "{err}");
        // A node certificate is not a CA.
        fs::copy(dir.path().join("n1.pem"), dir.path().join("ca.pem")).unwrap();
        fs::copy(dir.path().join("n1.key"), dir.path().join("ca.key")).unwrap();
        let err = generate_dev_certs(dir.path(), "prod", &["n2".into()], 10).unwrap_err();
        assert!(err.to_string().contains("not a CA"), "{err}");
    }

    #[test]
    fn bad_names_and_days_are_refused() {
        for id in ["", "ca", "CA", "a/b", "../x", "10.0.0.1", "-a", "a b", "é"] {
            assert!(validate_node_id(id).is_err(), "{id:?}");
        }
        for id in ["node-a", "n1", "node_a", "node-a.prod.internal"] {
            validate_node_id(id).unwrap();
        }
        for c in ["", "a/b", "a:b", &"x".repeat(64)] {
            assert!(validate_cluster_name(c).is_err(), "{c:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            generate_dev_certs(dir.path(), "prod", &["a".into()], 0),
            Err(CertGenError::InvalidDays { days: 0 })
        ));
        assert!(matches!(
            generate_dev_certs(dir.path(), "prod", &[], 1),
            Err(CertGenError::NoNodes)
        ));
    }
}
