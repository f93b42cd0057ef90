//! Helpers shared by the integration tests. Each test binary includes this with `mod support;`
//! and uses a subset, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod dashboards;
pub mod exporter;
pub mod mailstack;
pub mod measure;
pub mod outcome;
pub mod programs;
pub mod prometheus;
pub mod readme;
pub mod webhook;
