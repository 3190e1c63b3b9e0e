//! Everything that leaves a phimon node toward operators (placeholder
//! until the exporter lands): Prometheus metrics, the HTTP server, the
//! alert engine and webhook delivery.
