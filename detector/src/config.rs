//! Detector settings.

use std::time::Duration;

/// Which probability model turns a window of intervals into phi.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Distribution {
    /// phimon's default: the median of the last few intervals as the
    /// expected interval (follows interval changes within a few
    /// heartbeats), bursts after a sender pause folded into one late
    /// arrival, a jitter band for on-time heartbeats, and a Bayesian model,
    /// learned per peer, of how often and by how much (in seconds) its
    /// heartbeats run late. See `docs/detection.md`.
    #[default]
    Adaptive,
    /// Normal with the window's mean and standard deviation (Akka's model,
    /// with an exact log-space tail instead of Akka's logistic curve).
    Normal,
    /// Exponential with the window's mean (Cassandra's model):
    /// phi = t / (mean * ln 10). Grows linearly, so it tolerates jitter
    /// well but detects slowly on steady links.
    Exponential,
}

impl Distribution {
    /// The name used in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            Distribution::Adaptive => "adaptive",
            Distribution::Normal => "normal",
            Distribution::Exponential => "exponential",
        }
    }

    /// Every distribution, for help texts and sweeps.
    pub const ALL: &'static [Distribution] = &[
        Distribution::Adaptive,
        Distribution::Normal,
        Distribution::Exponential,
    ];
}

impl std::fmt::Display for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Distribution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Distribution::ALL
            .iter()
            .copied()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Distribution::ALL.iter().map(|d| d.as_str()).collect();
                format!(
                    "unknown distribution {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Settings shared by every peer's detector.
///
/// The defaults are Akka's documented ones except the tail computation;
/// see each field for how to choose a value.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// Number of most recent inter-arrival intervals kept per peer
    /// (1..=100_000; default 1000). Larger windows give steadier estimates
    /// but adapt more slowly after a change of the network. Memory is
    /// 4 bytes per slot.
    pub window: usize,
    /// Floor for the standard deviation (default 100 ms). On a very steady
    /// link the measured deviation is tiny and phi would jump to the
    /// threshold on the first late heartbeat; the floor is the jitter you
    /// are willing to forgive.
    pub min_std_dev: Duration,
    /// Pause that is not suspicious at all (default 0 s): added to the
    /// mean, as in Akka. Set it to the longest expected GC pause of the
    /// monitored process.
    pub acceptable_pause: Duration,
    /// The probability model (default adaptive).
    pub distribution: Distribution,
    /// The expected heartbeat interval, used as the prior before a peer
    /// has a few samples of its own (default 1 s). Set it to the gossip
    /// interval.
    pub first_heartbeat_estimate: Duration,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            window: 1000,
            min_std_dev: Duration::from_millis(100),
            acceptable_pause: Duration::ZERO,
            distribution: Distribution::Adaptive,
            first_heartbeat_estimate: Duration::from_secs(1),
        }
    }
}

impl DetectorConfig {
    /// Largest accepted window.
    pub const MAX_WINDOW: usize = 100_000;
}
