//! Fleet scenarios on a simulated clock: joins, crashes, restarts, leaves,
//! hand-overs, partitions, stalls, loss and forgeries, and the pages they
//! make. Each is a script that never sleeps.

mod paging;
mod protocol;

use phimon_gossip::{GossipConfig, NodeId, Record, Status};
use phimon_node::{AlertConfig, NodeConfig};
use phimon_sim::{Cluster, ClusterConfig};
use std::sync::Arc;
use std::time::Duration;

/// `s` seconds.
pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The settings every scenario starts from.
pub fn config() -> ClusterConfig {
    ClusterConfig {
        node: NodeConfig {
            gossip: GossipConfig {
                cluster: "test".into(),
                ..GossipConfig::default()
            },
            alert: AlertConfig {
                cluster: "test".into(),
                ..AlertConfig::default()
            },
        },
        ..ClusterConfig::default()
    }
}

/// A cluster of `n` that joined through node 0 and settled: every node
/// holds every record and sees every node alive.
pub fn joined(n: usize, cfg: ClusterConfig) -> Cluster {
    let mut c = Cluster::new(n, cfg);
    let took = c.run_until(secs(60), |c| {
        c.converged() && (0..n).all(|x| c.all_see(x, Status::Alive))
    });
    assert!(took.is_some(), "cluster of {n} did not settle");
    c
}

/// The record of `of` as node `at` holds it.
pub fn record_at(c: &Cluster, at: usize, of: &NodeId) -> Arc<Record> {
    c.node(at)
        .and_then(|n| n.gossip().member(of))
        .map(|m| m.record().clone())
        .unwrap_or_else(|| panic!("node {at} holds no record of {of}"))
}
