//! `phimon certs`: a development CA and one certificate/key per node, so a
//! secure cluster starts with one command. The work is done by
//! [`phimon_transport::tls::generate_dev_certs`]; this is the CLI around it.

use std::path::PathBuf;

use phimon_transport::tls::{CertGenError, generate_dev_certs};

use crate::UsageError;

/// Arguments of `phimon certs`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Writes DIR/ca.pem and DIR/ca.key (reused when both exist), and DIR/ID.pem \
and DIR/ID.key for every --node ID. Keys are written with mode 0600.

Each node certificate carries its ID as DNS name (the node identity) and \
the URI phimon://CLUSTER/ID (peers of other clusters are refused), and \
allows both server and client authentication. This is a development PKI; \
see docs/security.md for cert-manager, Vault or step-ca.")]
pub struct CertsArgs {
    /// Directory to write into (created if missing, mode 0700).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
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

/// Runs `phimon certs`.
pub fn run(args: CertsArgs) -> anyhow::Result<()> {
    let report = generate_dev_certs(&args.out, &args.cluster, &args.nodes, args.days).map_err(
        |e| -> anyhow::Error {
            match e {
                // The user's to fix: a bad flag or a half-present CA.
                CertGenError::InvalidNodeId { .. }
                | CertGenError::InvalidCluster { .. }
                | CertGenError::InvalidDays { .. }
                | CertGenError::NoNodes
                | CertGenError::CaIncomplete { .. }
                | CertGenError::CaUnusable { .. } => UsageError(e.to_string()).into(),
                other => anyhow::Error::new(other).context("phimon certs failed"),
            }
        },
    )?;
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
