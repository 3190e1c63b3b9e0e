//! `phimon certs`: a development CA and one certificate/key per node, so a
//! secure cluster starts with one command; and `phimon certs csr`: a
//! node's key and a signing request for a CA that signs requests
//! (cert-manager, Vault, step-ca), so the key never leaves the node. The
//! work is done by [`phimon_transport::tls::generate_dev_certs`] and
//! [`phimon_transport::tls::write_node_csr`]; this is the CLI around them.

use std::path::PathBuf;

use phimon_transport::tls::{CertGenError, generate_dev_certs, write_node_csr};

use crate::UsageError;

/// Arguments of `phimon certs`.
#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "\
Writes DIR/ca.pem and DIR/ca.key (reused when both exist), and DIR/ID.pem \
and DIR/ID.key for every --node ID. Keys are written with mode 0600.

Each node certificate carries its ID as DNS name (the node identity) and \
the URI phimon://CLUSTER/ID (peers of other clusters are refused), and \
allows both server and client authentication. This is a development PKI; \
see docs/security.md for cert-manager, Vault or step-ca, and \
`phimon certs csr` for a key that never leaves the node."
)]
pub struct CertsArgs {
    #[command(subcommand)]
    command: Option<CertsCommand>,
    /// Directory to write into (created if missing, mode 0700).
    #[arg(long, value_name = "DIR", required = true)]
    out: Option<PathBuf>,
    /// Node id to issue a certificate for; repeat, or list several.
    #[arg(long = "node", value_name = "ID", required = true, num_args = 1..)]
    nodes: Vec<String>,
    /// Cluster name embedded in the certificates (`[cluster] name`).
    #[arg(long, value_name = "NAME", default_value = "default")]
    cluster: String,
    /// Validity of the node certificates, in days. A new CA lasts at least
    /// ten years.
    #[arg(long, value_name = "N", default_value_t = 365)]
    days: u32,
}

#[derive(Debug, clap::Subcommand)]
enum CertsCommand {
    /// Generate a node's private key and a certificate signing request
    /// for it, to have a real CA sign.
    Csr(CsrArgs),
}

/// Arguments of `phimon certs csr`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Writes DIR/ID.key (a new ECDSA P-256 key, mode 0600) and DIR/ID.csr (PEM \
CERTIFICATE REQUEST), replacing existing files. The request asks for the \
DNS name ID (the node identity, also the common name), the URI \
phimon://CLUSTER/ID, the digital signature key usage and both server and \
client authentication; the CA chooses the validity. For a cert-manager \
CertificateRequest set `usages: [digital signature, server auth, client \
auth]`, exactly these. See deploy/kubernetes/phimon.yaml.")]
pub struct CsrArgs {
    /// Directory to write into (created if missing, mode 0700).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The node id (`[node] id`).
    #[arg(long = "node", value_name = "ID")]
    node: String,
    /// Cluster name (`[cluster] name`).
    #[arg(long, value_name = "NAME")]
    cluster: String,
}

/// Errors the user fixes with other flags or files: exit 2.
fn to_anyhow(e: CertGenError, what: &str) -> anyhow::Error {
    match e {
        CertGenError::InvalidNodeId { .. }
        | CertGenError::InvalidCluster { .. }
        | CertGenError::InvalidDays { .. }
        | CertGenError::NoNodes
        | CertGenError::CaIncomplete { .. }
        | CertGenError::CaUnusable { .. } => UsageError(e.to_string()).into(),
        other => anyhow::Error::new(other).context(format!("{what} failed")),
    }
}

/// Runs `phimon certs` or `phimon certs csr`.
pub fn run(args: CertsArgs) -> anyhow::Result<()> {
    if let Some(CertsCommand::Csr(csr)) = args.command {
        return run_csr(csr);
    }
    // clap requires --out without a subcommand; say so rather than panic
    // should that rule ever change.
    let out = args
        .out
        .ok_or_else(|| UsageError("phimon certs needs --out DIR".into()))?;
    let report = generate_dev_certs(&out, &args.cluster, &args.nodes, args.days)
        .map_err(|e| to_anyhow(e, "phimon certs"))?;
    println!(
        "{} CA {} (key {})",
        if report.ca_reused {
            "reused"
        } else {
            "created"
        },
        report.ca_cert.display(),
        report.ca_key.display()
    );
    for (id, cert, key) in &report.nodes {
        println!("node {id}: {} {}", cert.display(), key.display());
    }
    println!(
        "cluster {:?}; in each node's config: [tls] ca = {:?}, cert = <ID>.pem, key = <ID>.key",
        args.cluster,
        report.ca_cert.display().to_string()
    );
    Ok(())
}

fn run_csr(args: CsrArgs) -> anyhow::Result<()> {
    let report = write_node_csr(&args.out, &args.cluster, &args.node)
        .map_err(|e| to_anyhow(e, "phimon certs csr"))?;
    println!(
        "node {}: key {} request {}",
        args.node,
        report.key.display(),
        report.csr.display()
    );
    Ok(())
}
