//! Handing the node's pages to the durable outbox, and what a disk that
//! refuses them means: counted, reported by `/readyz` and
//! `phimon_data_dir_writable`, held in memory (and delivered) meanwhile,
//! and written as soon as the disk takes them again.

use phimon_alert::AlertRecord;
use phimon_exporter::Metrics;
use phimon_pager::Outbox;
use prometheus::IntGauge;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often pages held in memory are offered to the disk again.
const RETRY: Duration = Duration::from_secs(1);

/// The outbox side of the runtime.
pub struct Paging {
    outbox: Option<Outbox>,
    metrics: Arc<Metrics>,
    /// `phimon_data_dir_writable`.
    writable: IntGauge,
    /// The generation file could be written at start.
    generation_ok: bool,
    next_retry: Option<Instant>,
}

impl Paging {
    /// Paging through `outbox` (`None`: it could not be opened, pages are
    /// logged and dropped).
    pub fn new(
        outbox: Option<Outbox>,
        metrics: Arc<Metrics>,
        writable: IntGauge,
        generation_ok: bool,
    ) -> Paging {
        Paging {
            outbox,
            metrics,
            writable,
            generation_ok,
            next_retry: None,
        }
    }

    /// Makes `record` durable (or holds it in memory when the disk
    /// refuses it) and wakes delivery.
    pub fn enqueue(&mut self, record: &AlertRecord) {
        let Some(outbox) = &self.outbox else {
            self.metrics.record_enqueue_failure();
            tracing::error!("no usable outbox: alert not delivered");
            return;
        };
        match outbox.enqueue(record, SystemTime::now()) {
            Ok(report) => {
                self.metrics.record_enqueue(&report);
                if let Some(e) = &report.not_durable {
                    tracing::error!(
                        "alert could not be written to disk: {e}; it is held in memory and \
                         delivered, and written once the disk accepts it (lost if phimon dies first)"
                    );
                    self.writable.set(0);
                    self.next_retry = Some(Instant::now() + RETRY);
                }
            }
            Err(e) => {
                self.metrics.record_enqueue_failure();
                tracing::error!("alert could not be queued, it is lost: {e}");
            }
        }
    }

    /// Offers the pages held in memory to the disk again, at most once a
    /// second, while there are some.
    pub fn retry(&mut self) {
        let (Some(outbox), Some(due)) = (&self.outbox, self.next_retry) else {
            return;
        };
        if Instant::now() < due {
            return;
        }
        match outbox.persist_unsaved() {
            Ok(n) => {
                if n > 0 {
                    tracing::info!("the disk accepts writes again: {n} held alert(s) written");
                }
                self.next_retry = None;
                self.writable.set(i64::from(self.generation_ok));
            }
            Err(e) => {
                tracing::debug!("held alerts still cannot be written: {e}");
                self.next_retry = Some(Instant::now() + RETRY);
            }
        }
    }
}
