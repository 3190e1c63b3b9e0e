//! The node's one UDP socket, shared by quinn and the datagram fast path:
//! our implementation of quinn's [`AsyncUdpSocket`]. quinn's endpoint
//! driver reads through it as usual; packets whose first byte has both
//! high bits clear (never QUIC, see [`crate::fastpath`]) are taken out of
//! each batch, verified and delivered right there, and only the rest is
//! handed to quinn. A heartbeat on the fast path thus costs the receiver
//! one wake-up (the endpoint driver's) and no QUIC processing at all.
//!
//! Sending a sealed packet is one `sendmsg` from the caller's thread, with
//! the same source address quinn uses for the connection.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use quinn::udp::{RecvMeta, Transmit, UdpSocketState};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::io::Interest;

use crate::fastpath::{FastPath, Reply, is_fast_path};
use crate::stats::TransportStats;

/// Batches read in one `poll_recv` that held only fast-path packets before
/// it yields: bounds the time a flood of them can keep the endpoint driver
/// (and the runtime's thread) busy.
const FAST_ONLY_BATCHES: usize = 4;

/// See the [module docs](self).
pub(crate) struct DemuxSocket {
    io: tokio::net::UdpSocket,
    state: UdpSocketState,
    fast: Arc<FastPath>,
    stats: Arc<TransportStats>,
}

impl fmt::Debug for DemuxSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemuxSocket")
            .field("local_addr", &self.io.local_addr())
            .finish_non_exhaustive()
    }
}

impl DemuxSocket {
    /// Wraps a bound socket; must run inside a tokio runtime.
    pub(crate) fn new(
        socket: std::net::UdpSocket,
        fast: Arc<FastPath>,
        stats: Arc<TransportStats>,
    ) -> io::Result<Arc<DemuxSocket>> {
        // Sets the socket options quinn relies on (non-blocking, ECN,
        // packet info, GRO) exactly as quinn's own tokio socket does.
        let state = UdpSocketState::new((&socket).into())?;
        let io = tokio::net::UdpSocket::from_std(socket)?;
        Ok(Arc::new(DemuxSocket {
            io,
            state,
            fast,
            stats,
        }))
    }

    /// Sends one fast-path packet now. `WouldBlock` when the socket's send
    /// buffer is full (the caller then sends over QUIC, which waits).
    pub(crate) fn send_fast(
        &self,
        destination: SocketAddr,
        src_ip: Option<IpAddr>,
        contents: &[u8],
    ) -> io::Result<()> {
        let t = Transmit {
            destination,
            ecn: None,
            contents,
            segment_size: None,
            src_ip,
        };
        self.io.try_io(Interest::WRITABLE, || {
            self.state.send((&self.io).into(), &t)
        })?;
        self.stats.udp_sent(1);
        Ok(())
    }

    /// Takes the fast-path packets out of the `n` messages just read,
    /// handles them, and compacts what is left for quinn to the front of
    /// `bufs` and `meta`; returns how many messages are left.
    fn demux(&self, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta], n: usize) -> usize {
        let n = n.min(bufs.len()).min(meta.len());
        let now = Instant::now();
        let mut kept = 0;
        for i in 0..n {
            self.filter(&mut bufs[i], &mut meta[i], now);
            if meta[i].len > 0 {
                // quinn reads message k from bufs[k]: swapping the slices
                // (all of one size) moves a message without copying it.
                bufs.swap(i, kept);
                meta.swap(i, kept);
                kept += 1;
            }
        }
        kept
    }

    /// Handles the fast-path packets of one message (several with GRO,
    /// each `stride` bytes but the last) and closes the gaps they leave,
    /// so that what remains is again a valid run of QUIC packets.
    fn filter(&self, buf: &mut [u8], meta: &mut RecvMeta, now: Instant) {
        let len = meta.len.min(buf.len());
        let stride = if meta.stride == 0 { len } else { meta.stride };
        if len == 0 {
            meta.len = 0;
            return;
        }
        self.stats.udp_received(len.div_ceil(stride));
        // The common case, a message of QUIC packets only: one byte read
        // per packet and nothing moved.
        if !(0..len).step_by(stride).any(|at| is_fast_path(buf[at])) {
            return;
        }
        let mut write = 0;
        let mut read = 0;
        while read < len {
            let end = (read + stride).min(len);
            if is_fast_path(buf[read]) {
                if let Reply::Notice(notice) =
                    self.fast.on_packet(&mut buf[read..end], meta.addr, now)
                {
                    // Rate-limited and smaller than what prompted it; a
                    // full send buffer only loses the notice.
                    if self.send_fast(meta.addr, meta.dst_ip, &notice).is_ok() {
                        self.stats.notice_sent();
                    }
                }
            } else {
                if write != read {
                    buf.copy_within(read..end, write);
                }
                write += end - read;
            }
            read = end;
        }
        meta.len = write;
    }
}

impl AsyncUdpSocket for DemuxSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Writable {
            socket: self,
            fut: None,
        })
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        self.io.try_io(Interest::WRITABLE, || {
            self.state.send((&self.io).into(), transmit)
        })?;
        let segments = transmit
            .segment_size
            .map_or(1, |s| transmit.contents.len().div_ceil(s.max(1)));
        self.stats.udp_sent(segments);
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        for _ in 0..FAST_ONLY_BATCHES {
            let n = loop {
                ready!(self.io.poll_recv_ready(cx))?;
                // As quinn's own tokio socket: errors other than
                // WouldBlock (which clears readiness) are retried, since
                // ICMP-induced ones are harmless and may be spoofed.
                if let Ok(n) = self.io.try_io(Interest::READABLE, || {
                    self.state.recv((&self.io).into(), bufs, meta)
                }) {
                    break n;
                }
            };
            let kept = self.demux(bufs, meta, n);
            if kept > 0 {
                return Poll::Ready(Ok(kept));
            }
        }
        // Only fast-path packets lately: let other tasks run, then
        // continue.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    fn may_fragment(&self) -> bool {
        self.state.may_fragment()
    }

    fn max_transmit_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.state.gro_segments()
    }
}

type WritableFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send + Sync>>;

/// Waits for the socket to be writable, for one quinn task.
struct Writable {
    socket: Arc<DemuxSocket>,
    fut: Option<WritableFuture>,
}

impl fmt::Debug for Writable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writable").finish_non_exhaustive()
    }
}

impl UdpPoller for Writable {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let fut = this.fut.get_or_insert_with(|| {
            let socket = this.socket.clone();
            Box::pin(async move { socket.io.writable().await })
        });
        let result = fut.as_mut().poll(cx);
        if result.is_ready() {
            this.fut = None;
        }
        result
    }
}
