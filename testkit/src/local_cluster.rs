//! A cluster of real `phimon run` processes on 127.0.0.1.
//!
//! [`LocalCluster::create`] generates certificates with `phimon certs`
//! ([`DevCerts`]), picks free ports and writes one config per node into a
//! directory; nodes are then started, killed, stopped and resumed one by
//! one as child processes of the `phimon` binary the caller names.
//! Dropping the cluster kills every child.

use crate::certs::DevCerts;
use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use phimon_exporter::api::{PeerInfo, Status};
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What to build.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Number of nodes, named `node-1` .. `node-N`.
    pub nodes: usize,
    /// Cluster name.
    pub cluster: String,
    /// Gossip interval.
    pub interval: Duration,
    /// phi threshold.
    pub threshold: f64,
    /// Webhook URL (generic format, signed with `secret`), if any.
    pub webhook_url: Option<String>,
    /// Webhook secret.
    pub secret: String,
    /// Extra TOML appended to every node's config.
    pub extra_toml: String,
    /// Addresses node i advertises and is dialled at (a chaos proxy's
    /// fronts, see [`crate::chaos::ChaosProxy`]); `None`: its listen address.
    pub fronts: Option<Vec<SocketAddr>>,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            nodes: 3,
            cluster: "local".into(),
            interval: Duration::from_millis(500),
            threshold: 8.0,
            webhook_url: None,
            secret: "whsec_cGhpbW9uLWxvY2FsLWNsdXN0ZXItc2VjcmV0".into(),
            extra_toml: String::new(),
            fronts: None,
        }
    }
}

/// One node of the cluster.
#[derive(Debug)]
pub struct Node {
    /// Node id.
    pub id: String,
    /// QUIC address.
    pub gossip: SocketAddr,
    /// HTTP address.
    pub http: SocketAddr,
    /// Its config file.
    pub config: PathBuf,
    /// Its log file (stdout and stderr of every run, appended).
    pub log: PathBuf,
    /// Extra environment of its process (e.g. `LD_PRELOAD` for fault
    /// injection); set before [`LocalCluster::start`].
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Node {
    /// The running child's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

/// The running cluster.
pub struct LocalCluster {
    bin: PathBuf,
    dir: PathBuf,
    /// The nodes, `node-1` first.
    pub nodes: Vec<Node>,
    http: reqwest::Client,
}

/// Sum of every sample of metric `name` in a Prometheus text exposition
/// (0 when absent): what the tests and the soak read from `/metrics`.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A free TCP port on 127.0.0.1 (the OS picks it; it is released at once,
/// so another process could take it in between: tests tolerate that).
pub fn free_tcp_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A free UDP port on 127.0.0.1.
pub fn free_udp_port() -> std::io::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn toml_str(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

impl LocalCluster {
    /// Generates certificates and configs for `spec` under `dir` using the
    /// `phimon` binary `bin` (tests: `env!("CARGO_BIN_EXE_phimon")`).
    /// Starts nothing.
    pub fn create(bin: &Path, dir: &Path, spec: &ClusterSpec) -> anyhow::Result<LocalCluster> {
        let ids: Vec<String> = (1..=spec.nodes).map(|i| format!("node-{i}")).collect();
        let certs = DevCerts::issue(bin, &dir.join("certs"), &spec.cluster, &ids)?;
        let secret_file = dir.join("hook.secret");
        std::fs::write(&secret_file, &spec.secret)?;
        let mut nodes = Vec::new();
        for id in &ids {
            let gossip = SocketAddr::from(([127, 0, 0, 1], free_udp_port()?));
            let http = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()?));
            nodes.push(Node {
                id: id.clone(),
                gossip,
                http,
                config: dir.join(format!("{id}.toml")),
                log: dir.join(format!("{id}.log")),
                env: Vec::new(),
                child: None,
            });
        }
        let dialled = |i: usize, n: &Node| {
            spec.fronts
                .as_ref()
                .and_then(|f| f.get(i).copied())
                .unwrap_or(n.gossip)
        };
        let seeds: Vec<String> = nodes
            .iter()
            .enumerate()
            .take(3)
            .map(|(i, n)| format!("\"{}\"", dialled(i, n)))
            .collect();
        for (i, n) in nodes.iter().enumerate() {
            let data = dir.join(&n.id);
            std::fs::create_dir_all(&data)?;
            let mut c = String::new();
            writeln!(
                c,
                "[node]\nid = \"{}\"\nlisten = \"{}\"\ndata_dir = {}",
                n.id,
                n.gossip,
                toml_str(&data)
            )?;
            if spec.fronts.is_some() {
                writeln!(c, "advertise = \"{}\"", dialled(i, n))?;
            }
            writeln!(c)?;
            writeln!(
                c,
                "[cluster]\nname = \"{}\"\nseeds = [{}]\n",
                spec.cluster,
                seeds.join(", ")
            )?;
            writeln!(
                c,
                "[tls]\nca = {}\ncert = {}\nkey = {}\n",
                toml_str(&certs.ca()),
                toml_str(&certs.cert(&n.id)),
                toml_str(&certs.key(&n.id))
            )?;
            writeln!(
                c,
                "[gossip]\ninterval = \"{}ms\"\n",
                spec.interval.as_millis()
            )?;
            writeln!(c, "[detector]\nthreshold = {:?}\n", spec.threshold)?;
            writeln!(
                c,
                "[http]\nlisten = \"{}\"\nexport_all_peers = true\n",
                n.http
            )?;
            if let Some(url) = &spec.webhook_url {
                writeln!(
                    c,
                    "[[alert.webhook]]\nname = \"sink\"\nurl = \"{url}\"\nformat = \"generic\"\nallow_insecure_http = true\nsecret_file = {}\n",
                    toml_str(&secret_file)
                )?;
            }
            c.push_str(&spec.extra_toml);
            std::fs::write(&n.config, c)?;
        }
        Ok(LocalCluster {
            bin: bin.to_owned(),
            dir: dir.to_owned(),
            nodes,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()?,
        })
    }

    /// Real (listen) addresses of the nodes, for a chaos proxy's backends.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.gossip).collect()
    }

    /// The directory holding certificates, configs, logs and data.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts node `i` (0-based) as `phimon run --config ...`.
    pub fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let bin = self.bin.clone();
        let n = self.nodes.get_mut(i).context("no such node")?;
        if n.child.is_some() {
            bail!("{} is already running", n.id);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)?;
        let child = Command::new(bin)
            .args(["run", "--config"])
            .arg(&n.config)
            .envs(n.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", n.id))?;
        n.child = Some(child);
        Ok(())
    }

    /// Starts every node.
    pub fn start_all(&mut self) -> anyhow::Result<()> {
        for i in 0..self.nodes.len() {
            self.start(i)?;
        }
        Ok(())
    }

    /// Sends `signal` to node `i`.
    pub fn signal(&self, i: usize, signal: Signal) -> anyhow::Result<()> {
        let pid = self
            .nodes
            .get(i)
            .and_then(Node::pid)
            .context("node not running")?;
        kill(Pid::from_raw(i32::try_from(pid)?), signal)?;
        Ok(())
    }

    /// `kill -9` node `i` and reaps it.
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        let n = self.nodes.get_mut(i).context("no such node")?;
        if let Some(mut c) = n.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        Ok(())
    }

    /// SIGTERM node `i` and waits up to `timeout` for it to exit; returns
    /// its exit status, or kills it and fails after the timeout.
    pub fn terminate(
        &mut self,
        i: usize,
        timeout: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        self.signal(i, Signal::SIGTERM)?;
        let n = self.nodes.get_mut(i).context("no such node")?;
        let Some(mut c) = n.child.take() else {
            bail!("not running")
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = c.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                bail!("{} did not exit within {timeout:?} of SIGTERM", n.id);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while node `i` runs.
    pub fn is_running(&mut self, i: usize) -> bool {
        match self.nodes.get_mut(i).and_then(|n| n.child.as_mut()) {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// `GET /v1/peers` of node `i`.
    pub async fn peers(&self, i: usize) -> anyhow::Result<Vec<PeerInfo>> {
        let n = self.nodes.get(i).context("no such node")?;
        Ok(fetch_peers(&self.http, n.http).await?)
    }

    /// `/v1/peers` of each of `nodes`, fetched at once (empty for a node
    /// that does not answer), in the order given.
    pub async fn peers_of(&self, nodes: &[usize]) -> Vec<Vec<PeerInfo>> {
        let mut set = tokio::task::JoinSet::new();
        for (k, &i) in nodes.iter().enumerate() {
            let Some(n) = self.nodes.get(i) else { continue };
            let (http, addr) = (self.http.clone(), n.http);
            set.spawn(async move { (k, fetch_peers(&http, addr).await.unwrap_or_default()) });
        }
        let mut out = vec![Vec::new(); nodes.len()];
        while let Some(r) = set.join_next().await {
            if let Ok((k, peers)) = r {
                out[k] = peers;
            }
        }
        out
    }

    /// `GET path` of node `i`, as text.
    pub async fn get(&self, i: usize, path: &str) -> anyhow::Result<String> {
        let n = self.nodes.get(i).context("no such node")?;
        let r = self
            .http
            .get(format!("http://{}{path}", n.http))
            .send()
            .await?;
        Ok(r.error_for_status()?.text().await?)
    }

    /// Waits until every running node lists every other node with status
    /// alive and not suspected, or fails after `timeout`.
    pub async fn wait_converged(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.is_running(i))
            .collect();
        loop {
            let mut ok = true;
            let mut missing = Vec::new();
            for &i in &running {
                let peers = self.peers(i).await.unwrap_or_default();
                for &j in running.iter().filter(|&&j| j != i) {
                    let good = peers.iter().any(|p| {
                        p.node_id == self.nodes[j].id && p.status == Status::Alive && !p.suspected
                    });
                    if !good {
                        ok = false;
                        let seen = peers
                            .iter()
                            .find(|p| p.node_id == self.nodes[j].id)
                            .map_or("absent".to_string(), |p| {
                                format!("{} suspected={}", p.status, p.suspected)
                            });
                        missing.push(format!(
                            "{} sees {}: {seen}",
                            self.nodes[i].id, self.nodes[j].id
                        ));
                    }
                }
            }
            if ok {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                // The directory goes with the test: say here what failed,
                // and the end of each node's log.
                let mut logs = String::new();
                for &i in &running {
                    let tail = self.log_tail(i, 8).replace('\n', "\n    ");
                    logs.push_str(&format!("\n  {}:\n    {tail}", self.nodes[i].id));
                }
                bail!(
                    "cluster did not converge within {timeout:?}: {}; logs in {}{logs}",
                    missing.join(", "),
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last `lines` lines of node `i`'s log, for failure messages.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let Some(n) = self.nodes.get(i) else {
            return String::new();
        };
        let text = std::fs::read_to_string(&n.log).unwrap_or_default();
        let v: Vec<&str> = text.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }
}

/// `GET /v1/peers` of the node whose HTTP API listens at `addr`.
async fn fetch_peers(http: &reqwest::Client, addr: SocketAddr) -> reqwest::Result<Vec<PeerInfo>> {
    let r = http.get(format!("http://{addr}/v1/peers")).send().await?;
    r.error_for_status()?.json().await
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                // A stopped child cannot die from SIGKILL until continued.
                let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
