//! The heartbeat mailbox: a second UDP socket for sealed packets whose
//! arrival time matters but not the moment they are read — heartbeats.
//!
//! A packet on the node's main socket wakes the process at once (quinn
//! must see QUIC packets promptly), and on an idle node those wake-ups
//! are most of its cost: each observer gets one per monitored peer per
//! interval, on top of its own timer. Packets sent to the mailbox instead
//! wake nobody. The kernel queues them with their arrival time
//! (`SO_TIMESTAMPNS`), and the node reads them all whenever it wakes for
//! any other reason ([`Mailbox::drain`]) — its own heartbeat timer at the
//! latest, which comes every interval — and before anything that reads a
//! detector. phi is computed from the kernel's arrival time, so reading
//! late changes nothing it measures: a heartbeat queued for 900 ms counts
//! as having arrived when it did.
//!
//! Packets are the fast path's (see [`crate::fastpath`]): the same keys,
//! replay window and source check (the sender seals on its main socket, so
//! the source is the connection's address), and the same counters. A
//! receiver that has a mailbox announces its port right after `Ready`
//! (frame `Mailbox{key id, port}`); a sender seals heartbeats to that port
//! and everything else to the main socket. When the fast path's check
//! finds that mailbox packets do not arrive (a firewall opens only the
//! main port), the sender moves them to the main socket, and from there,
//! as before, to QUIC datagrams if those do not arrive either.
//!
//! # Floods
//!
//! An unread queue can overflow. The socket asks for a large receive
//! buffer and the kernel's drop count (`SO_RXQ_OVFL`). A drain that finds
//! drops, or a queue of more than [`EAGER_AFTER`] packets, switches the
//! mailbox to eager reading — registered with the runtime and read on
//! every arrival, as the main socket is — until [`EAGER_LINGER`] passes
//! without either. Someone flooding the port thus costs at most the
//! heartbeats queued during one interval, not a suspicion (phi needs
//! several silent intervals), and then meets the same defences as on the
//! main socket. Kernel drops are counted as `receive_dropped`.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use nix::sys::time::TimeSpec;

use crate::fastpath::{FastPath, MAX_PACKET, Reply, is_fast_path};
use crate::socket::DemuxSocket;
use crate::stats::{DatagramDrop, TransportStats};
use crate::transport::lock;

/// Packets in one drain above which the mailbox reads eagerly for a
/// while: far above what the peers a node monitors send per interval.
pub const EAGER_AFTER: usize = 128;

/// How long eager reading lasts after the last drain that asked for it.
pub const EAGER_LINGER: Duration = Duration::from_secs(30);

/// Receive buffer asked for (the kernel caps it at `net.core.rmem_max`).
const RECEIVE_BUFFER: usize = 4 << 20;

/// Most packets read in one drain: bounds the time a flood can hold the
/// caller; the rest is read by the eager task that such a drain starts.
const MAX_PER_DRAIN: usize = 4096;

/// Read errors one drain reads past before it gives up until the next.
const MAX_ERRORS_PER_DRAIN: usize = 8;

/// See the [module docs](self).
pub(crate) struct Mailbox {
    socket: UdpSocket,
    port: u16,
    fast: Arc<FastPath>,
    /// The main socket: notices go back from the address the sender
    /// checks against.
    main: Arc<DemuxSocket>,
    stats: Arc<TransportStats>,
    buffers: Mutex<Buffers>,
    eager: AtomicBool,
    runtime: tokio::runtime::Handle,
}

struct Buffers {
    packet: Box<[u8; MAX_PACKET + 1]>,
    control: Vec<u8>,
    /// The kernel's drop count at the last read.
    overflows: u32,
    /// When the last drain began: no packet read later arrived earlier
    /// (a wall clock stepped back cannot date one before it).
    last_drain: Instant,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("port", &self.port)
            .field("eager", &self.eager.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Mailbox {
    /// Binds the mailbox on `ip`, port `port` (0: any free one).
    pub(crate) fn bind(
        ip: IpAddr,
        port: u16,
        fast: Arc<FastPath>,
        main: Arc<DemuxSocket>,
        stats: Arc<TransportStats>,
        runtime: tokio::runtime::Handle,
    ) -> io::Result<Arc<Mailbox>> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, port))?;
        socket.set_nonblocking(true)?;
        setsockopt(&socket, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)?;
        setsockopt(&socket, sockopt::RxqOvfl, &1).map_err(io::Error::from)?;
        // Best effort: the default buffer still holds many intervals of
        // heartbeats.
        let _ = setsockopt(&socket, sockopt::RcvBuf, &RECEIVE_BUFFER);
        let port = socket.local_addr()?.port();
        Ok(Arc::new(Mailbox {
            socket,
            port,
            fast,
            main,
            stats,
            buffers: Mutex::new(Buffers {
                packet: Box::new([0; MAX_PACKET + 1]),
                control: nix::cmsg_space!(TimeSpec, u32),
                overflows: 0,
                last_drain: Instant::now(),
            }),
            eager: AtomicBool::new(false),
            runtime,
        }))
    }

    /// The port peers seal heartbeats to.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Reads every queued packet and hands it to the fast path, stamped
    /// with its arrival time; returns how many were read. Never blocks.
    pub(crate) fn drain(self: &Arc<Self>) -> usize {
        let (read, flood) = self.read_all();
        if flood {
            self.go_eager();
        }
        read
    }

    /// Reads until the queue is empty; returns the count and whether the
    /// mailbox should read eagerly for a while.
    fn read_all(&self) -> (usize, bool) {
        let mut b = lock(&self.buffers);
        let b = &mut *b;
        let now = Instant::now();
        let wall = SystemTime::now();
        let floor = b.last_drain;
        b.last_drain = now;
        let mut read = 0;
        let mut dropped = 0u32;
        let mut errors = 0;
        while read < MAX_PER_DRAIN {
            let (len, src, stamp, overflows, truncated) = {
                let mut iov = [IoSliceMut::new(&mut b.packet[..])];
                match recvmsg::<SockaddrStorage>(
                    self.socket.as_raw_fd(),
                    &mut iov,
                    Some(&mut b.control),
                    MsgFlags::MSG_DONTWAIT,
                ) {
                    Ok(msg) => {
                        let mut stamp = None;
                        let mut overflows = None;
                        if let Ok(cmsgs) = msg.cmsgs() {
                            for c in cmsgs {
                                match c {
                                    ControlMessageOwned::ScmTimestampns(ts) => stamp = Some(ts),
                                    ControlMessageOwned::RxqOvfl(n) => overflows = Some(n),
                                    _ => {}
                                }
                            }
                        }
                        let truncated = msg.flags.contains(MsgFlags::MSG_TRUNC);
                        (
                            msg.bytes,
                            msg.address.and_then(|a| to_socket_addr(&a)),
                            stamp,
                            overflows,
                            truncated,
                        )
                    }
                    Err(Errno::EINTR) => continue,
                    Err(Errno::EAGAIN) => break,
                    Err(e) => {
                        // ICMP-induced errors and the like are reported
                        // once each: read on, since a deadline may be
                        // judged right after this drain, but not forever.
                        tracing::debug!(error = %e, "mailbox read failed");
                        errors += 1;
                        if errors >= MAX_ERRORS_PER_DRAIN {
                            break;
                        }
                        continue;
                    }
                }
            };
            read += 1;
            self.stats.udp_received(1);
            if let Some(n) = overflows {
                dropped = dropped.saturating_add(n.wrapping_sub(b.overflows));
                b.overflows = n;
            }
            let pkt = &mut b.packet[..len.min(MAX_PACKET + 1)];
            let Some(src) = src else { continue };
            if truncated || len > MAX_PACKET || pkt.is_empty() || !is_fast_path(pkt[0]) {
                self.stats.datagram_dropped(DatagramDrop::Malformed);
                continue;
            }
            let at = arrival(now, wall, stamp, floor);
            if let Reply::Notice(notice) = self.fast.on_packet_from(pkt, src, at, true) {
                if self.main.send_fast(src, None, &notice).is_ok() {
                    self.stats.notice_sent();
                }
            }
        }
        if dropped > 0 {
            self.stats.receive_dropped_n(u64::from(dropped));
        }
        (read, dropped > 0 || read >= EAGER_AFTER)
    }

    /// Reads on every arrival until [`EAGER_LINGER`] passes without a
    /// drain that asks for it; at most one such task at a time.
    fn go_eager(self: &Arc<Self>) {
        if self.eager.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(
            port = self.port,
            "heartbeat mailbox flooded or overflowing: reading it on every arrival for a while"
        );
        let me = self.clone();
        self.runtime.spawn(async move {
            if let Err(e) = me.read_eagerly().await {
                tracing::warn!(error = %e, "eager mailbox reading failed: back to reading on wake-ups");
            }
            me.eager.store(false, Ordering::Release);
        });
    }

    async fn read_eagerly(&self) -> io::Result<()> {
        // The registration ends with this clone, and with it the
        // wake-ups.
        #[allow(deprecated)]
        let fd = tokio::io::unix::AsyncFd::with_interest(
            self.socket.try_clone()?,
            tokio::io::Interest::READABLE,
        )?;
        let mut asked = Instant::now();
        loop {
            match tokio::time::timeout(EAGER_LINGER, fd.readable()).await {
                Ok(Ok(mut guard)) => {
                    let (_, flood) = self.read_all();
                    guard.clear_ready();
                    if flood {
                        asked = Instant::now();
                    }
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => {}
            }
            if asked.elapsed() >= EAGER_LINGER {
                return Ok(());
            }
        }
    }
}

/// The monotonic time of a packet the kernel stamped `stamp` (wall
/// clock), read at `now` / `wall`: never later than `now`, never before
/// `floor` (the previous drain), and `now` when there is no stamp.
fn arrival(now: Instant, wall: SystemTime, stamp: Option<TimeSpec>, floor: Instant) -> Instant {
    let Some(ts) = stamp else { return now };
    let (Ok(secs), Ok(nanos)) = (u64::try_from(ts.tv_sec()), u32::try_from(ts.tv_nsec())) else {
        return now;
    };
    let Some(stamped) = Duration::from_secs(secs).checked_add(Duration::from_nanos(nanos.into()))
    else {
        return now;
    };
    let Ok(wall) = wall.duration_since(UNIX_EPOCH) else {
        return now;
    };
    let age = wall.saturating_sub(stamped);
    now.checked_sub(age).unwrap_or(floor).max(floor).min(now)
}

fn to_socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    // As the kernel gives it (v4-mapped on a dual-stack socket), which is
    // how quinn saw the connection's address too.
    a.as_sockaddr_in6()
        .map(|v6| SocketAddr::new(IpAddr::V6(v6.ip()), v6.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(d: Duration) -> TimeSpec {
        TimeSpec::from_duration(d)
    }

    #[test]
    fn arrivals_come_from_the_kernel_stamp_within_bounds() {
        let now = Instant::now();
        let floor = now - Duration::from_secs(1);
        let wall = UNIX_EPOCH + Duration::from_secs(1_000_000);
        // Stamped 300 ms before the read.
        let at = arrival(
            now,
            wall,
            Some(ts(Duration::from_millis(999_999_700))),
            floor,
        );
        assert_eq!(now - at, Duration::from_millis(300));
        // No stamp: the read time.
        assert_eq!(arrival(now, wall, None, floor), now);
        // A stamp in the future (the wall clock stepped back): now.
        let at = arrival(now, wall, Some(ts(Duration::from_secs(1_000_005))), floor);
        assert_eq!(at, now);
        // A stamp before the previous drain (stepped forward): the floor.
        let at = arrival(now, wall, Some(ts(Duration::from_secs(999_000))), floor);
        assert_eq!(at, floor);
    }
}
