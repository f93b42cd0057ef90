//! smtp-prober: a Prometheus exporter and synthetic SMTP delivery prober.
//!
//! The layers, top to bottom (ARCHITECTURE.md): `cli` → `http` → `exporter` →
//! `scheduler` → `report`/`exposition` → `probe` → `headers`/`smtp` → `tls` →
//! `vocab`/`printable`/`secret`/`local_file`/`networks`/`clock`; `config` is
//! read by `cli` and `exporter` and builds `probe` modules. `demo` is a server used by the
//! `demo` command, tests and benchmarks. Only `report`, `exposition` and `exporter` know about
//! Prometheus.
#![forbid(unsafe_code)]

pub mod cancel;
pub mod cli;
pub(crate) mod clock;
pub mod config;
pub mod demo;
pub mod exporter;
pub mod exposition;
pub mod headers;
pub(crate) mod http;
pub mod imap;
pub(crate) mod intern;
pub mod local_file;
pub mod networks;
pub mod printable;
pub mod probe;
pub mod report;
pub mod scheduler;
pub mod secret;
pub mod shard;
pub mod smtp;
pub mod tls;
pub mod vocab;
