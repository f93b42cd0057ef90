//! The HTTP server (DESIGN §8).

pub mod exposition;
