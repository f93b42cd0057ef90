//! The probe: runs one module against one target and turns the outcome into metrics, JSON and a
//! human transcript. The only layer below HTTP that knows about Prometheus.

pub mod module;
