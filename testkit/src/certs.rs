//! Development certificates for test clusters, made by the `phimon`
//! binary under test (`phimon certs`), so the tests exercise the same
//! PKI an operator's first cluster gets.

use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A directory written by `phimon certs`: `ca.pem`, `ca.key`, and
/// `ID.pem` / `ID.key` for every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevCerts {
    /// The directory.
    pub dir: PathBuf,
}

impl DevCerts {
    /// Runs `phimon certs --out dir --cluster cluster --node ID...` with the
    /// binary `phimon`; an existing CA in `dir` is reused, as the command
    /// does.
    pub fn issue(
        phimon: &Path,
        dir: &Path,
        cluster: &str,
        ids: &[String],
    ) -> anyhow::Result<DevCerts> {
        let mut cmd = Command::new(phimon);
        cmd.args(["certs", "--out"])
            .arg(dir)
            .args(["--cluster", cluster])
            .stdin(Stdio::null());
        for id in ids {
            cmd.args(["--node", id]);
        }
        let out = cmd
            .output()
            .with_context(|| format!("running {} certs", phimon.display()))?;
        if !out.status.success() {
            bail!(
                "phimon certs failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(DevCerts {
            dir: dir.to_owned(),
        })
    }

    /// The cluster CA's certificate (`[tls] ca`).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Node `id`'s certificate chain (`[tls] cert`).
    pub fn cert(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.pem"))
    }

    /// Node `id`'s private key (`[tls] key`).
    pub fn key(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.key"))
    }
}
