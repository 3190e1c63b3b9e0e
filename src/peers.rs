//! `phimon peers` (alias `phimon status`): the local sidecar's view of the
//! fleet, read from its HTTP API (`GET /v1/peers`), as a table or JSON.
//!
//! The request is one blocking HTTP/1.1 GET over a `std` TCP stream: the
//! API is on loopback, the answer small, and a CLI needs no async runtime
//! for it.

use crate::UsageError;
use anyhow::{Context as _, bail};
use phimon_exporter::{NodeInfo, PeerInfo, api::Status};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `phimon peers`.
#[derive(Debug, clap::Args)]
pub struct PeersArgs {
    /// Print the `/v1/peers` JSON array instead of the table.
    #[arg(long)]
    pub json: bool,
    /// The sidecar's HTTP address (its `http.listen`).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9464")]
    pub addr: String,
    /// Read the address from this configuration's `http.listen` instead.
    #[arg(long, value_name = "FILE", conflicts_with = "addr")]
    pub config: Option<PathBuf>,
}

/// How long to wait for the sidecar to accept, and then to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest answer read (a fleet of thousands of peers fits).
const MAX_ANSWER_BYTES: u64 = 64 * 1024 * 1024;

/// Runs `phimon peers`.
pub fn run(args: PeersArgs) -> anyhow::Result<()> {
    let addr = address(&args.addr, args.config.as_deref())?;
    let (status, body) = get(&addr, "/v1/peers")?;
    if status != 200 {
        bail!(
            "the sidecar at {addr} answered {status} to GET /v1/peers: {}",
            body.trim()
        );
    }
    let peers: Vec<PeerInfo> = serde_json::from_str(&body)
        .with_context(|| format!("the sidecar at {addr} answered GET /v1/peers with bad JSON"))?;
    // This node's own row; a sidecar that does not serve it just has
    // none.
    let me: Option<NodeInfo> = match get(&addr, "/v1/node") {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    };
    let mut out = std::io::stdout().lock();
    let text = if args.json {
        // The array as served, re-encoded from the typed peers so that
        // what scripts read is the documented schema.
        let mut s = serde_json::to_string_pretty(&peers)?;
        s.push('\n');
        s
    } else {
        table(me.as_ref(), &peers)
    };
    match out.write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// The sidecar's HTTP address: `--config`'s `http.listen` if given, else
/// `--addr`.
pub fn address(addr: &str, config: Option<&std::path::Path>) -> anyhow::Result<String> {
    Ok(match config {
        Some(path) => {
            let c = phimon_config::Config::load(path).map_err(|e| UsageError(e.to_string()))?;
            local_address(c.http.listen).to_string()
        }
        None => addr.to_owned(),
    })
}

/// Where a client on this host reaches a listener bound to `listen`: a
/// wildcard address is reached on loopback.
fn local_address(listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() {
        let ip = if listen.is_ipv4() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
        };
        SocketAddr::new(ip, listen.port())
    } else {
        listen
    }
}

/// `GET path` from `addr`: the status code and the body.
pub fn get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let not_running = |why: String| {
        anyhow::anyhow!(
            "no phimon sidecar answering at {addr}: {why} — is `phimon run` running? \
             (--addr HOST:PORT or --config FILE names another)"
        )
    };
    let targets: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| UsageError(format!("--addr {addr:?}: {e}")))?
        .collect();
    let mut last = String::from("no address");
    let mut stream = None;
    for t in &targets {
        match TcpStream::connect_timeout(t, CONNECT_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = "connection refused".into();
            }
            Err(e) => last = e.to_string(),
        }
    }
    let mut stream = stream.ok_or_else(|| not_running(last))?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nUser-Agent: phimon/{}\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
    .map_err(|e| not_running(e.to_string()))?;
    let mut raw = Vec::new();
    stream
        .take(MAX_ANSWER_BYTES)
        .read_to_end(&mut raw)
        .map_err(|e| not_running(format!("reading the answer: {e}")))?;
    parse_response(&raw).with_context(|| format!("the answer from {addr} is not HTTP"))
}

/// Status and body of a complete HTTP/1.1 response (`Content-Length`,
/// chunked, or read to the close).
fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, String)> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).context("headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .context("no status code")?;
    let mut chunked = false;
    let mut length = None;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if k == "content-length" {
            length = v.parse::<usize>().ok();
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else {
        match length {
            Some(n) => rest
                .get(..n)
                .context("answer shorter than its length")?
                .to_vec(),
            None => rest.to_vec(),
        }
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut rest: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("truncated chunk size")?;
        let size = std::str::from_utf8(&rest[..eol])?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .context("bad chunk size")?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(rest.get(..size).context("truncated chunk")?);
        rest = rest.get(size + 2..).context("truncated chunk")?;
    }
}

/// The table: this node's row (when known) then one row per peer,
/// columns padded to their widest cell.
pub fn table(me: Option<&NodeInfo>, peers: &[PeerInfo]) -> String {
    if peers.is_empty() && me.is_none() {
        return "no peers known yet (the node has not joined, or is alone)\n".to_owned();
    }
    let header = [
        "NODE",
        "ADDRESS",
        "STATUS",
        "PHI",
        "LAST HEARTBEAT",
        "GENERATION",
        "OBSERVERS",
        "SUSPECTED BY",
    ];
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(",")
        }
    };
    let own = me.map(|m| {
        [
            m.node_id.clone(),
            m.address.clone(),
            format!("{} (this node)", m.status),
            "-".to_owned(),
            "-".to_owned(),
            m.generation.to_string(),
            list(&m.observers),
            list(&m.suspected_by),
        ]
    });
    let rows: Vec<[String; 8]> = own
        .into_iter()
        .chain(peers.iter().map(|p| {
            // phi and heartbeat age exist only where the peer's
            // heartbeats arrive: at its observers.
            let (phi, age) = if p.observed {
                (
                    format!("{:.2}", p.phi),
                    format!("{:.1}s ago", p.last_heartbeat_age_ms / 1000.0),
                )
            } else {
                ("-".to_owned(), "-".to_owned())
            };
            let status = match (
                p.status,
                p.locally_suspected && p.status != Status::Suspected,
            ) {
                (s, true) => format!("{s} (suspected here)"),
                (s, false) => s.to_string(),
            };
            [
                p.node_id.clone(),
                p.address.clone(),
                status,
                phi,
                age,
                p.generation.to_string(),
                list(&p.observers),
                list(&p.suspected_by),
            ]
        }))
        .collect();
    let mut width = header.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(width).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header);
    for r in &rows {
        line(&r.each_ref().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_read_by_length_chunked_or_to_the_close() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n[]";
        assert_eq!(parse_response(plain).unwrap(), (200, "[]".into()));
        let chunked =
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n2\r\n\"}\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (404, "{\"a\"}".into()));
        let closed = b"HTTP/1.0 200 OK\r\n\r\nhello";
        assert_eq!(parse_response(closed).unwrap(), (200, "hello".into()));
        assert!(parse_response(b"garbage").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
    }

    #[test]
    fn the_table_has_a_row_per_peer_and_dashes_where_unobserved() {
        let peers = vec![
            PeerInfo {
                node_id: "node-2".into(),
                address: "127.0.0.1:7802".into(),
                generation: 17,
                status: Status::Alive,
                phi: 0.42,
                observed: true,
                observers: vec!["node-1".into(), "node-3".into()],
                last_heartbeat_age_ms: 250.0,
                ..PeerInfo::default()
            },
            PeerInfo {
                node_id: "node-3".into(),
                address: "127.0.0.1:7803".into(),
                generation: 4,
                status: Status::Suspected,
                suspected: true,
                suspected_by: vec!["node-2".into()],
                ..PeerInfo::default()
            },
        ];
        let t = table(None, &peers);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("NODE"), "{t}");
        assert!(
            lines[1].contains("0.42") && lines[1].contains("0.2s ago"),
            "{t}"
        );
        assert!(lines[1].contains("node-1,node-3"), "{t}");
        let cols: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "node-3",
                "127.0.0.1:7803",
                "suspected",
                "-",
                "-",
                "4",
                "-",
                "node-2"
            ]
        );
        assert!(table(None, &[]).starts_with("no peers"));
        let me = NodeInfo {
            node_id: "node-1".into(),
            address: "127.0.0.1:7801".into(),
            generation: 9,
            status: Status::Alive,
            observers: vec!["node-2".into(), "node-3".into()],
            ..NodeInfo::default()
        };
        let t = table(Some(&me), &peers);
        let first: Vec<&str> = t.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(
            first,
            [
                "node-1",
                "127.0.0.1:7801",
                "alive",
                "(this",
                "node)",
                "-",
                "-",
                "9",
                "node-2,node-3",
                "-"
            ],
            "{t}"
        );
    }

    #[test]
    fn a_wildcard_listener_is_reached_on_loopback() {
        assert_eq!(
            local_address("0.0.0.0:9464".parse().unwrap()).to_string(),
            "127.0.0.1:9464"
        );
        assert_eq!(
            local_address("[::]:9464".parse().unwrap()).to_string(),
            "[::1]:9464"
        );
        assert_eq!(
            local_address("10.0.0.5:80".parse().unwrap()).to_string(),
            "10.0.0.5:80"
        );
    }
}
