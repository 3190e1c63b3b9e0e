//! Typed phimon configuration (placeholder).
