//! The SMTP client side we own: commands, replies, extensions, SASL AUTH and the timed session
//! that runs a probe conversation and keeps every exchange as data (RFC 5321, 3207, 4954, 3463).

pub mod auth;
pub mod command;
pub mod extension;
pub mod hints;
pub mod reply;
pub mod session;
pub mod transcript;
