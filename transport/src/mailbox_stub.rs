//! The heartbeat mailbox needs Linux (kernel arrival stamps, the drop
//! count): elsewhere there is none, and peers seal heartbeats to the main
//! socket.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use crate::fastpath::FastPath;
use crate::socket::DemuxSocket;
use crate::stats::TransportStats;

/// Never built on this platform.
#[derive(Debug)]
pub(crate) struct Mailbox;

impl Mailbox {
    pub(crate) fn bind(
        _ip: IpAddr,
        _port: u16,
        _fast: Arc<FastPath>,
        _main: Arc<DemuxSocket>,
        _stats: Arc<TransportStats>,
        _runtime: tokio::runtime::Handle,
    ) -> io::Result<Arc<Mailbox>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the heartbeat mailbox needs Linux",
        ))
    }

    pub(crate) fn port(&self) -> u16 {
        0
    }

    pub(crate) fn drain(self: &Arc<Self>) -> usize {
        0
    }
}
