//! The HTTP API: `/metrics`, `/healthz`, `/readyz`, `/v1/peers`,
//! `/v1/peers/{id}`, `POST /v1/reload`.

use crate::api::{ApiError, ReloadReport};
use crate::control::{Control, MAX_WHATIF_THRESHOLDS, Request, ask};
use crate::metrics::Metrics;
use crate::snapshot::{Refresher, SharedSnapshot, read, refresh};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;

/// What the handlers read: the snapshot the runtime publishes (see
/// [`crate::snapshot::publish`]) and the metrics.
#[derive(Clone, Debug)]
pub struct HttpState {
    /// The published node snapshot.
    pub snapshot: SharedSnapshot,
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
    /// Asks the runtime for a fresh snapshot before each read (`None`:
    /// read what was published).
    pub refresh: Option<Refresher>,
    /// Hands requests the snapshot cannot answer to the runtime
    /// (`None`: no runtime; `/v1/peers/{id}` and `/v1/reload` answer
    /// 503).
    pub control: Option<Control>,
    /// `POST /v1/reload` is served (the runtime sets it only when the
    /// listener is a loopback address: anyone who can reach a wider one
    /// could otherwise make the node re-read its files); 403 otherwise.
    pub reload_over_http: bool,
}

/// A JSON error answer.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(ApiError {
            error: message.into(),
        }),
    )
        .into_response()
}

/// The router: serve it with `axum::serve` on `[http] listen`.
///
/// - `GET /metrics`: Prometheus text format 0.0.4.
/// - `GET /healthz`: 200 while the process serves HTTP.
/// - `GET /readyz`: 200 once the node joined the cluster and paging
///   works, else 503 with one line per problem (not joined, no outbox,
///   pages held in memory because the disk refuses them).
/// - `GET /v1/peers`: JSON array, one object per peer, sorted by node id.
/// - `GET /v1/node`: this node itself ([`NodeInfo`](crate::NodeInfo)).
/// - `GET /v1/peers/{id}`: one peer ([`PeerDetail`](crate::PeerDetail)):
///   its `/v1/peers` fields, threshold, window fill and evidence; 404
///   with `{"error": ...}` for an id this node does not know.
/// - `GET /v1/peers/{id}/trace`: an observed peer's detector window as
///   an arrival trace (`text/plain`, the format `phimon eval` reads); 404
///   when this node does not observe it.
/// - `GET /v1/whatif?threshold=X[,Y...]`: the observed peers' windows
///   replayed at those thresholds beside the current one
///   ([`WhatIfReport`](crate::WhatIfReport)); 400 for a bad threshold.
/// - `POST /v1/reload`: re-read the configuration file
///   ([`ReloadReport`]): 200 when applied, 422 when refused (the old one
///   stays), 403 unless [`HttpState::reload_over_http`].
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/peers", get(peers))
        .route("/v1/node", get(local))
        .route("/v1/peers/{id}", get(peer))
        .route("/v1/peers/{id}/trace", get(trace))
        .route("/v1/whatif", get(whatif))
        .route("/v1/reload", post(reload))
        .with_state(state)
}

async fn metrics(State(s): State<HttpState>) -> Response {
    refresh(s.refresh.as_ref()).await;
    // Rendering walks every peer: keep it off the async workers.
    let m = s.metrics.clone();
    match tokio::task::spawn_blocking(move || m.render()).await {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<HttpState>) -> Response {
    refresh(s.refresh.as_ref()).await;
    let mut problems = Vec::new();
    if !read(&s.snapshot, |n| n.joined) {
        problems.push("not joined: no peer answered yet".to_owned());
    }
    problems.extend(s.metrics.paging_problems());
    if problems.is_empty() {
        return (StatusCode::OK, "ready\n").into_response();
    }
    let mut body = String::from("not ready:\n");
    for p in problems {
        body.push_str("- ");
        body.push_str(&p);
        body.push('\n');
    }
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

async fn peers(State(s): State<HttpState>) -> Response {
    refresh(s.refresh.as_ref()).await;
    let mut peers = read(&s.snapshot, |n| n.peers.clone());
    peers.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    axum::Json(peers).into_response()
}

async fn local(State(s): State<HttpState>) -> Response {
    if s.control.is_none() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no runtime to ask");
    }
    match ask(s.control.as_ref(), Request::Local).await {
        Some(info) => axum::Json(info).into_response(),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node did not answer in time",
        ),
    }
}

async fn peer(State(s): State<HttpState>, Path(id): Path<String>) -> Response {
    if s.control.is_none() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no runtime to ask");
    }
    match ask(s.control.as_ref(), |tx| Request::Peer(id.clone(), tx)).await {
        Some(Some(detail)) => axum::Json(detail).into_response(),
        Some(None) => {
            let me = read(&s.snapshot, |n| n.node_id.clone());
            error(
                StatusCode::NOT_FOUND,
                format!("no peer {id:?} is known to {me}; GET /v1/peers lists the known ones"),
            )
        }
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node did not answer in time",
        ),
    }
}

/// Parses `threshold=X,Y` (also repeated `threshold=` parameters).
fn thresholds(query: &[(String, String)]) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    for (k, v) in query {
        if k != "threshold" {
            return Err(format!("unknown parameter {k:?}; use threshold=X[,Y...]"));
        }
        for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.parse::<f64>() {
                Ok(t) if t.is_finite() && t > 0.0 && t <= 1000.0 => out.push(t),
                _ => {
                    return Err(format!("threshold {part:?} is not a number in (0, 1000]"));
                }
            }
        }
    }
    if out.len() > MAX_WHATIF_THRESHOLDS {
        return Err(format!(
            "at most {MAX_WHATIF_THRESHOLDS} thresholds per request, got {}",
            out.len()
        ));
    }
    Ok(out)
}

async fn whatif(
    State(s): State<HttpState>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let thresholds = match thresholds(&query) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if s.control.is_none() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no runtime to ask");
    }
    match ask(s.control.as_ref(), |tx| Request::WhatIf(thresholds, tx)).await {
        Some(report) => axum::Json(report).into_response(),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node did not answer in time",
        ),
    }
}

async fn trace(State(s): State<HttpState>, Path(id): Path<String>) -> Response {
    if s.control.is_none() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no runtime to ask");
    }
    match ask(s.control.as_ref(), |tx| Request::Trace(id.clone(), tx)).await {
        Some(Some(text)) => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
        }
        Some(None) => {
            let me = read(&s.snapshot, |n| n.node_id.clone());
            error(
                StatusCode::NOT_FOUND,
                format!(
                    "{me} does not observe {id:?}: only a node's observers receive its heartbeats \
                     (GET /v1/peers/{id} lists them)"
                ),
            )
        }
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node did not answer in time",
        ),
    }
}

async fn reload(State(s): State<HttpState>) -> Response {
    if !s.reload_over_http {
        return error(
            StatusCode::FORBIDDEN,
            "POST /v1/reload is served only when http.listen is a loopback address; \
             send SIGHUP to the phimon process instead",
        );
    }
    match ask(s.control.as_ref(), Request::Reload).await {
        Some(report @ ReloadReport { ok: true, .. }) => axum::Json(report).into_response(),
        Some(report) => (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(report)).into_response(),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node did not answer in time",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PeerInfo;
    use crate::api::Status;
    use crate::config::ExportConfig;
    use crate::snapshot::{NodeSnapshot, publish};
    use axum::body::Body;
    use axum::http::Request;
    use std::sync::RwLock;
    use tower::ServiceExt;

    pub(crate) fn peer(id: &str, phi: f64) -> PeerInfo {
        PeerInfo {
            node_id: id.into(),
            address: format!("{id}.internal:7800"),
            generation: 2,
            status: Status::Alive,
            phi,
            suspected: phi >= 8.0,
            last_heartbeat_age_ms: 250.0,
            interval_mean_ms: 1000.0,
            interval_stddev_ms: 12.5,
            interval_p50_ms: 1000.0,
            interval_p99_ms: 1040.0,
            interval_max_ms: 1100.0,
            window_fill: 0.5,
            observed: true,
            ..PeerInfo::default()
        }
    }

    fn state(export_all: bool) -> HttpState {
        let snapshot = Arc::new(RwLock::new(NodeSnapshot {
            node_id: "node-0".into(),
            ..NodeSnapshot::default()
        }));
        let export = ExportConfig {
            export_all_peers: export_all,
        };
        let metrics = Arc::new(Metrics::new("0.1.0", export, snapshot.clone()).unwrap());
        HttpState {
            snapshot,
            metrics,
            refresh: None,
            control: None,
            reload_over_http: false,
        }
    }

    async fn get(state: &HttpState, path: &str) -> (StatusCode, String, String) {
        let res = router(state.clone())
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let ctype = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = axum::body::to_bytes(res.into_body(), 1 << 24)
            .await
            .unwrap();
        (status, ctype, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn health_and_readiness() {
        let s = state(false);
        assert_eq!(get(&s, "/healthz").await.0, StatusCode::OK);
        assert_eq!(get(&s, "/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
        publish(
            &s.snapshot,
            NodeSnapshot {
                node_id: "node-0".into(),
                joined: true,
                peers: vec![],
            },
        );
        assert_eq!(get(&s, "/readyz").await.0, StatusCode::OK);
        assert_eq!(get(&s, "/nope").await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn readiness_says_why_paging_is_broken() {
        let s = state(false);
        publish(
            &s.snapshot,
            NodeSnapshot {
                node_id: "node-0".into(),
                joined: true,
                peers: vec![],
            },
        );
        let dir = tempfile::tempdir().unwrap();
        let (outbox, _) = phimon_pager::Outbox::open(
            dir.path(),
            &["oncall".to_string()],
            phimon_pager::OutboxLimits::default(),
        )
        .unwrap();
        s.metrics.watch_outbox(outbox.clone());
        assert_eq!(get(&s, "/readyz").await.0, StatusCode::OK);
        // The disk refuses the next record (its temp file's name is
        // taken): the page is held in memory, and readiness says so.
        let blocker = dir.path().join("oncall").join(format!(".{:020}.tmp", 1));
        std::fs::create_dir(&blocker).unwrap();
        let report = outbox
            .enqueue(
                &crate::metrics::tests::record(),
                std::time::SystemTime::now(),
            )
            .unwrap();
        s.metrics.record_enqueue(&report);
        let (status, _, body) = get(&s, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.starts_with("not ready:\n- alert outbox cannot write to disk, 1 page(s) held in memory only: outbox create"), "{body}");
        let metrics = get(&s, "/metrics").await.2;
        assert!(
            metrics.contains("phimon_alert_enqueue_failures_total 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("phimon_alert_outbox_unsaved 1"),
            "{metrics}"
        );
        // Space is back: written, ready again.
        std::fs::remove_dir(&blocker).unwrap();
        assert_eq!(outbox.persist_unsaved().unwrap(), 1);
        assert_eq!(get(&s, "/readyz").await.0, StatusCode::OK);
        // No outbox at all.
        s.metrics
            .set_outbox_unusable("outbox create /x: read-only file system");
        let (status, _, body) = get(&s, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.contains("alert outbox unusable, pages are not sent: outbox create /x"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn peers_have_exactly_the_documented_fields() {
        let s = state(false);
        publish(
            &s.snapshot,
            NodeSnapshot {
                node_id: "node-0".into(),
                joined: true,
                peers: vec![peer("node-2", 9.5), peer("node-1", 0.3)],
            },
        );
        let (status, ctype, body) = get(&s, "/v1/peers").await;
        assert_eq!(status, StatusCode::OK);
        assert!(ctype.starts_with("application/json"), "{ctype}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let arr = v.as_array().unwrap();
        assert_eq!(arr.len(), 2);
        assert_eq!(arr[0]["node_id"], "node-1", "sorted");
        let mut keys: Vec<&str> = arr[1]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "address",
                "generation",
                "heartbeats_lost",
                "interval_max_ms",
                "interval_mean_ms",
                "interval_p50_ms",
                "interval_p99_ms",
                "interval_stddev_ms",
                "last_heartbeat_age_ms",
                "locally_suspected",
                "node_id",
                "observed",
                "observers",
                "phi",
                "status",
                "suspected",
                "suspected_by",
            ]
        );
        assert_eq!(arr[1]["status"], "alive");
        assert_eq!(arr[1]["suspected"], true);
        assert_eq!(arr[1]["generation"], 2);
        // Clients read the answer back into the same type; only the
        // window fill, which the API does not serve, is lost.
        let back: Vec<PeerInfo> = serde_json::from_str(&body).unwrap();
        let mut want = vec![peer("node-1", 0.3), peer("node-2", 9.5)];
        for p in &mut want {
            p.window_fill = 0.0;
        }
        assert_eq!(back, want);
    }

    #[tokio::test]
    async fn metrics_are_served_as_prometheus_text() {
        let s = state(true);
        s.metrics.add_webhook("oncall");
        s.metrics.heartbeats_received.inc_by(7);
        publish(
            &s.snapshot,
            NodeSnapshot {
                node_id: "node-0".into(),
                joined: true,
                peers: vec![peer("node-1", 9.5), peer("node-2", 1.0)],
            },
        );
        let (status, ctype, body) = get(&s, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
        for line in [
            "phimon_heartbeats_received_total 7",
            "phimon_peer_phi{peer=\"node-1\"} 9.5",
            "phimon_peer_suspected{peer=\"node-1\"} 1",
            "phimon_peer_suspected{peer=\"node-2\"} 0",
            "phimon_peers{status=\"alive\"} 2",
            "phimon_peers_suspected 1",
            "phimon_peer_phi_max 9.5",
            "phimon_build_info{version=\"0.1.0\"} 1",
            "phimon_alerts_sent_total{outcome=\"delivered\",webhook=\"oncall\"} 0",
            "# TYPE phimon_tick_lateness_seconds histogram",
        ] {
            assert!(body.contains(line), "missing {line:?} in\n{body}");
        }
    }

    /// A stand-in runtime answering control requests: knows `node-1`, and
    /// a reload succeeds once, then fails.
    fn with_runtime(mut s: HttpState) -> HttpState {
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut reloads = 0;
            while let Some(req) = rx.recv().await {
                match req {
                    crate::control::Request::Peer(id, reply) => {
                        let _ = reply.send((id == "node-1").then(|| crate::api::PeerDetail {
                            peer: peer("node-1", 1.5),
                            threshold: 12.0,
                            window_samples: 40,
                            window_capacity: 1000,
                            evidence: None,
                        }));
                    }
                    crate::control::Request::Trace(id, reply) => {
                        let _ = reply.send(
                            (id == "node-1")
                                .then(|| "# interval_ms=500\n# end_ms=0\narrival_ms\n0\n".into()),
                        );
                    }
                    crate::control::Request::Local(reply) => {
                        let _ = reply.send(crate::api::NodeInfo {
                            node_id: "node-0".into(),
                            ..Default::default()
                        });
                    }
                    crate::control::Request::WhatIf(thresholds, reply) => {
                        let _ = reply.send(crate::api::WhatIfReport {
                            thresholds,
                            ..Default::default()
                        });
                    }
                    crate::control::Request::Reload(reply) => {
                        reloads += 1;
                        let _ = reply.send(if reloads == 1 {
                            ReloadReport {
                                ok: true,
                                changed: vec!["detector.threshold: 8 -> 12".into()],
                                error: None,
                            }
                        } else {
                            ReloadReport {
                                ok: false,
                                changed: vec![],
                                error: Some("node.listen cannot change live".into()),
                            }
                        });
                    }
                }
            }
        });
        s.control = Some(tx);
        s
    }

    async fn post(state: &HttpState, path: &str) -> (StatusCode, String) {
        let res = router(state.clone())
            .oneshot(Request::post(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn one_peer_is_served_with_its_details_or_a_json_404() {
        let s = with_runtime(state(false));
        let (status, ctype, body) = get(&s, "/v1/peers/node-1").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(ctype.starts_with("application/json"), "{ctype}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["node_id"], "node-1", "flattened: {v}");
        assert_eq!(v["threshold"], 12.0);
        assert_eq!(v["window_samples"], 40);
        assert!(v["evidence"].is_null());
        let back: crate::api::PeerDetail = serde_json::from_str(&body).unwrap();
        assert_eq!(back.peer.node_id, "node-1");

        let (status, ctype, body) = get(&s, "/v1/peers/nobody").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(ctype.starts_with("application/json"), "{ctype}");
        let e: ApiError = serde_json::from_str(&body).unwrap();
        assert!(e.error.contains("no peer \"nobody\""), "{}", e.error);

        let (status, _, body) = get(&s, "/v1/node").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let me: crate::api::NodeInfo = serde_json::from_str(&body).unwrap();
        assert_eq!(me.node_id, "node-0");

        let (status, ctype, body) = get(&s, "/v1/peers/node-1/trace").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(ctype.starts_with("text/plain"), "{ctype}");
        assert!(body.starts_with("# interval_ms=500"), "{body}");
        let (status, _, body) = get(&s, "/v1/peers/node-7/trace").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let e: ApiError = serde_json::from_str(&body).unwrap();
        assert!(
            e.error.contains("does not observe \"node-7\""),
            "{}",
            e.error
        );

        // Without a runtime: a clear 503, not a hang.
        let (status, _, _) = get(&state(false), "/v1/peers/node-1").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn reload_is_served_only_on_a_loopback_listener() {
        let mut s = with_runtime(state(false));
        let (status, body) = post(&s, "/v1/reload").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(
            body.contains("loopback") && body.contains("SIGHUP"),
            "{body}"
        );
        s.reload_over_http = true;
        let (status, body) = post(&s, "/v1/reload").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let r: ReloadReport = serde_json::from_str(&body).unwrap();
        assert!(
            r.ok && r.changed == ["detector.threshold: 8 -> 12"],
            "{r:?}"
        );
        let (status, body) = post(&s, "/v1/reload").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body.contains("node.listen"), "{body}");
        // GET is not a reload.
        assert_eq!(
            get(&s, "/v1/reload").await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[tokio::test]
    async fn whatif_takes_a_list_of_thresholds_and_refuses_bad_ones() {
        let s = with_runtime(state(false));
        let (status, _, body) = get(&s, "/v1/whatif?threshold=4,12.5&threshold=16").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let r: crate::api::WhatIfReport = serde_json::from_str(&body).unwrap();
        assert_eq!(r.thresholds, [4.0, 12.5, 16.0]);
        assert_eq!(get(&s, "/v1/whatif").await.0, StatusCode::OK);
        for bad in [
            "threshold=x",
            "threshold=-1",
            "threshold=NaN",
            "threshold=inf",
            "t=3",
        ] {
            let (status, _, body) = get(&s, &format!("/v1/whatif?{bad}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
            assert!(body.contains("\"error\""), "{body}");
        }
        let many = ["1"; MAX_WHATIF_THRESHOLDS + 1].join(",");
        let (status, _, _) = get(&s, &format!("/v1/whatif?threshold={many}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
}
