//! A chaos UDP proxy: the fault injector of the end-to-end tests.
//!
//! `tc netem` is not available here, so the tests put this proxy between
//! real phimon processes on loopback. Each node gets a *front* address on
//! the proxy, which it advertises and which the other nodes use as its
//! seed. A datagram arriving at node B's front from node A's real address
//! is the link A→B: it is dropped, delayed, duplicated or reordered per
//! that link's [`LinkFaults`], then forwarded to B from an upstream socket
//! dedicated to A (so B's replies come back to that socket, become link
//! B→A, and leave through B's front toward A). Partitions switch links off
//! and on while the test runs.

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;

/// Bursty loss: a two-state Markov chain per link (Gilbert–Elliott).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    /// Probability, per datagram, of going from the good to the bad state.
    pub p_good_to_bad: f64,
    /// Probability, per datagram, of going from the bad to the good state.
    pub p_bad_to_good: f64,
    /// Loss probability in the good state.
    pub loss_good: f64,
    /// Loss probability in the bad state.
    pub loss_bad: f64,
}

/// Faults applied to one direction of one link.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LinkFaults {
    /// Independent loss probability (0..=1).
    pub loss: f64,
    /// Bursty loss on top of `loss`.
    pub bursty: Option<GilbertElliott>,
    /// Base one-way delay.
    pub delay: Duration,
    /// Uniform jitter added to the delay, in `[-jitter, +jitter]` (clamped
    /// at zero). Jitter larger than the packet spacing reorders packets.
    pub jitter: Duration,
    /// Probability of sending a datagram twice.
    pub duplicate: f64,
    /// Drop everything (a partition).
    pub cut: bool,
}

/// Counters of one direction of one link.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Datagrams received from the sender.
    pub received: AtomicU64,
    /// Datagrams dropped (loss or partition).
    pub dropped: AtomicU64,
    /// Extra copies sent.
    pub duplicated: AtomicU64,
}

#[derive(Default)]
struct Link {
    faults: LinkFaults,
    bad_state: bool,
    stats: Arc<LinkStats>,
}

struct Shared {
    /// Real address of each node, by index.
    backends: Mutex<Vec<Option<SocketAddr>>>,
    /// (from, to) -> link; `from` is `None` for unknown senders.
    links: Mutex<HashMap<(Option<usize>, usize), Link>>,
    default_faults: Mutex<LinkFaults>,
    rng: Mutex<StdRng>,
}

impl Shared {
    fn node_of(&self, addr: SocketAddr) -> Option<usize> {
        let b = self.backends.lock().ok()?;
        b.iter().position(|x| *x == Some(addr))
    }

    /// Decides the fate of one datagram on link `key`: `None` to drop,
    /// else the delays of each copy to send.
    fn fate(&self, key: (Option<usize>, usize)) -> Option<Vec<Duration>> {
        let default = self.default_faults.lock().map(|d| *d).unwrap_or_default();
        let mut links = self.links.lock().ok()?;
        let link = links.entry(key).or_insert_with(|| Link {
            faults: default,
            ..Link::default()
        });
        let mut rng = self.rng.lock().ok()?;
        let f = link.faults;
        link.stats.received.fetch_add(1, Ordering::Relaxed);
        let mut lost = f.cut || rng.random_bool(f.loss.clamp(0.0, 1.0));
        if let Some(ge) = f.bursty {
            let flip = if link.bad_state {
                ge.p_bad_to_good
            } else {
                ge.p_good_to_bad
            };
            if rng.random_bool(flip.clamp(0.0, 1.0)) {
                link.bad_state = !link.bad_state;
            }
            let p = if link.bad_state {
                ge.loss_bad
            } else {
                ge.loss_good
            };
            lost |= rng.random_bool(p.clamp(0.0, 1.0));
        }
        if lost {
            link.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let copies = if rng.random_bool(f.duplicate.clamp(0.0, 1.0)) {
            link.stats.duplicated.fetch_add(1, Ordering::Relaxed);
            2
        } else {
            1
        };
        let mut delays = Vec::with_capacity(copies);
        for _ in 0..copies {
            let j = f.jitter.as_secs_f64();
            let d = f.delay.as_secs_f64()
                + if j > 0.0 {
                    rng.random_range(-j..=j)
                } else {
                    0.0
                };
            delays.push(Duration::from_secs_f64(d.max(0.0)));
        }
        Some(delays)
    }
}

/// A running proxy for `n` nodes.
pub struct ChaosProxy {
    fronts: Vec<SocketAddr>,
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn send_after(socket: Arc<UdpSocket>, delays: Vec<Duration>, data: Vec<u8>, to: SocketAddr) {
    for d in delays {
        if d.is_zero() {
            let _ = socket.send_to(&data, to).await;
        } else {
            let (socket, data) = (socket.clone(), data.clone());
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                let _ = socket.send_to(&data, to).await;
            });
        }
    }
}

impl ChaosProxy {
    /// Binds one front socket per node on 127.0.0.1. Forwarding starts
    /// once [`set_backends`](Self::set_backends) names the real addresses.
    pub async fn bind(n: usize, seed: u64) -> std::io::Result<ChaosProxy> {
        let shared = Arc::new(Shared {
            backends: Mutex::new(vec![None; n]),
            links: Mutex::new(HashMap::new()),
            default_faults: Mutex::new(LinkFaults::default()),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        });
        let mut fronts = Vec::new();
        let mut tasks = Vec::new();
        for to in 0..n {
            let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
            fronts.push(front.local_addr()?);
            let shared = shared.clone();
            tasks.push(tokio::spawn(Self::serve_front(to, front, shared)));
        }
        Ok(ChaosProxy {
            fronts,
            shared,
            tasks,
        })
    }

    /// Forwards datagrams arriving at node `to`'s front.
    async fn serve_front(to: usize, front: Arc<UdpSocket>, shared: Arc<Shared>) {
        let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        let mut buf = vec![0u8; 65_536];
        loop {
            let Ok((len, src)) = front.recv_from(&mut buf).await else {
                return;
            };
            let Some(backend) = shared
                .backends
                .lock()
                .ok()
                .and_then(|b| b.get(to).copied().flatten())
            else {
                continue;
            };
            let from = shared.node_of(src);
            let upstream = match upstreams.get(&src) {
                Some(u) => u.clone(),
                None => {
                    let Ok(u) = UdpSocket::bind("127.0.0.1:0").await else {
                        continue;
                    };
                    let u = Arc::new(u);
                    upstreams.insert(src, u.clone());
                    // Replies from `to` travel the link to -> from and leave
                    // through the front, so the sender sees one peer address.
                    let (u2, front2, shared2) = (u.clone(), front.clone(), shared.clone());
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 65_536];
                        while let Ok((len, _)) = u2.recv_from(&mut buf).await {
                            let Some(reply_to) = from else {
                                // Unknown senders (junk) get replies unharmed.
                                let _ = front2.send_to(&buf[..len], src).await;
                                continue;
                            };
                            if let Some(delays) = shared2.fate((Some(to), reply_to)) {
                                send_after(front2.clone(), delays, buf[..len].to_vec(), src).await;
                            }
                        }
                    });
                    u
                }
            };
            if let Some(delays) = shared.fate((from, to)) {
                send_after(upstream, delays, buf[..len].to_vec(), backend).await;
            }
        }
    }

    /// Front address of node `i`: what it advertises and others dial.
    pub fn front(&self, i: usize) -> SocketAddr {
        self.fronts[i]
    }

    /// Every front, by node index.
    pub fn fronts(&self) -> &[SocketAddr] {
        &self.fronts
    }

    /// Names the real (listen) address of every node.
    pub fn set_backends(&self, real: &[SocketAddr]) {
        if let Ok(mut b) = self.shared.backends.lock() {
            for (slot, addr) in b.iter_mut().zip(real) {
                *slot = Some(*addr);
            }
        }
    }

    /// Faults of the link `from` → `to` (node indices).
    pub fn set_link(&self, from: usize, to: usize, faults: LinkFaults) {
        if let Ok(mut l) = self.shared.links.lock() {
            l.entry((Some(from), to)).or_default().faults = faults;
        }
    }

    /// The same faults on every link, now and for links seen later.
    pub fn set_all(&self, faults: LinkFaults) {
        if let Ok(mut d) = self.shared.default_faults.lock() {
            *d = faults;
        }
        let n = self.fronts.len();
        for from in 0..n {
            for to in 0..n {
                if from != to {
                    self.set_link(from, to, faults);
                }
            }
        }
    }

    /// Cuts every link between nodes of different `groups` (both ways) and
    /// restores links inside a group to `LinkFaults::default()`.
    pub fn partition(&self, groups: &[&[usize]]) {
        let group_of = |i: usize| groups.iter().position(|g| g.contains(&i));
        let n = self.fronts.len();
        for from in 0..n {
            for to in 0..n {
                if from != to {
                    let cut = group_of(from) != group_of(to);
                    self.set_link(
                        from,
                        to,
                        LinkFaults {
                            cut,
                            ..LinkFaults::default()
                        },
                    );
                }
            }
        }
    }

    /// Restores every link to `LinkFaults::default()`.
    pub fn heal(&self) {
        self.set_all(LinkFaults::default());
    }

    /// Totals over all links: (received, dropped, duplicated).
    pub fn totals(&self) -> (u64, u64, u64) {
        let Ok(l) = self.shared.links.lock() else {
            return (0, 0, 0);
        };
        l.values().fold((0, 0, 0), |(r, d, u), link| {
            (
                r + link.stats.received.load(Ordering::Relaxed),
                d + link.stats.dropped.load(Ordering::Relaxed),
                u + link.stats.duplicated.load(Ordering::Relaxed),
            )
        })
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two plain UDP "nodes" talking through the proxy.
    async fn pair() -> (ChaosProxy, UdpSocket, UdpSocket) {
        let proxy = ChaosProxy::bind(2, 7).await.unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        proxy.set_backends(&[a.local_addr().unwrap(), b.local_addr().unwrap()]);
        (proxy, a, b)
    }

    async fn recv(s: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
        let mut buf = [0u8; 1500];
        match tokio::time::timeout(Duration::from_millis(300), s.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => Some((buf[..n].to_vec(), from)),
            _ => None,
        }
    }

    #[tokio::test]
    async fn forwards_both_ways_through_the_fronts() {
        let (proxy, a, b) = pair().await;
        a.send_to(b"ping", proxy.front(1)).await.unwrap();
        let (data, via) = recv(&b).await.unwrap();
        assert_eq!(data, b"ping");
        b.send_to(b"pong", via).await.unwrap();
        let (data, from) = recv(&a).await.unwrap();
        assert_eq!(data, b"pong");
        assert_eq!(from, proxy.front(1), "replies come from B's front");
    }

    #[tokio::test]
    async fn partitions_cut_and_heal() {
        let (proxy, a, b) = pair().await;
        proxy.partition(&[&[0], &[1]]);
        a.send_to(b"x", proxy.front(1)).await.unwrap();
        assert!(recv(&b).await.is_none());
        proxy.heal();
        a.send_to(b"y", proxy.front(1)).await.unwrap();
        assert_eq!(recv(&b).await.unwrap().0, b"y");
    }

    #[tokio::test]
    async fn loss_rate_is_close_to_the_setting() {
        let (proxy, a, b) = pair().await;
        proxy.set_link(
            0,
            1,
            LinkFaults {
                loss: 0.3,
                ..LinkFaults::default()
            },
        );
        // Drain B concurrently so its socket buffer never overflows.
        let counter = tokio::spawn(async move {
            let mut got = 0u64;
            while recv(&b).await.is_some() {
                got += 1;
            }
            got
        });
        for i in 0..1000u32 {
            a.send_to(&i.to_be_bytes(), proxy.front(1)).await.unwrap();
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let got = counter.await.unwrap();
        assert!(
            (600..=800).contains(&got),
            "{got} of 1000 arrived at 30% loss"
        );
        let (r, d, _) = proxy.totals();
        assert_eq!(r, 1000);
        assert_eq!(d, 1000 - got);
    }

    #[tokio::test]
    async fn delay_and_duplication() {
        let (proxy, a, b) = pair().await;
        proxy.set_link(
            0,
            1,
            LinkFaults {
                delay: Duration::from_millis(80),
                duplicate: 1.0,
                ..LinkFaults::default()
            },
        );
        let t = std::time::Instant::now();
        a.send_to(b"d", proxy.front(1)).await.unwrap();
        assert_eq!(recv(&b).await.unwrap().0, b"d");
        assert!(
            t.elapsed() >= Duration::from_millis(75),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(recv(&b).await.unwrap().0, b"d", "duplicate");
    }
}
