//! smtp-prober: a Prometheus exporter and synthetic SMTP delivery prober.
//!
//! Dependency direction, top to bottom: `cli` → `config` → `http`/`scheduler` → `probe` →
//! `smtp` → `tls` → `vocab`/`secret`. `demo` is a server used by the `demo` command, tests and
//! benchmarks. Only `probe`, `scheduler` and `http` know about Prometheus.
#![forbid(unsafe_code)]

pub mod cancel;
pub mod cli;
pub mod config;
pub mod demo;
pub mod http;
pub mod probe;
pub mod scheduler;
pub mod secret;
pub mod smtp;
pub mod tls;
pub mod vocab;
