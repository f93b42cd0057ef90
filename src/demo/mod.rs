//! The embedded SMTP server and its generated PKI: the zero-setup target of the `demo` command,
//! the fault-injecting peer of the test suite, and the fast sink of the benchmarks.
//!
//! [`DemoServer`] speaks real SMTP on loopback (RFC 5321, ESMTP with PIPELINING RFC 2920, SIZE
//! RFC 1870, STARTTLS RFC 3207, AUTH PLAIN/LOGIN/XOAUTH2/OAUTHBEARER RFC 4954, RFC 4616 and
//! RFC 7628, ENHANCEDSTATUSCODES RFC 2034/3463, 8BITMIME RFC 6152, SMTPUTF8 RFC 6531) and can be
//! told to misbehave at any step
//! ([`ServerConfig::reply_to`], [`ServerConfig::stall_at`], …) so that every failure reason a
//! server can cause is reproducible. [`DemoPki`] makes the root, intermediate and leaf it serves,
//! healthy or broken on purpose. [`TokenEndpoint`] issues OAuth 2.0 tokens over HTTPS into the
//! [`BearerTokens`] registry the server checks XOAUTH2 and OAUTHBEARER against.

//!
//! The server is split by concern: [`server`] (configuration, listener, what it received),
//! `session` (one conversation), `faults` (the misbehaviour DSL), `bearer` (the tokens it
//! accepts) and `wire` (its own parsers, kept apart from the prober's on purpose: an
//! independent peer is a better test oracle than one sharing the prober's bugs).

mod bearer;
mod faults;
pub mod ocsp;
pub mod pki;
pub mod server;
mod session;
#[cfg(test)]
mod tests;
pub mod token_endpoint;
mod wire;

pub use bearer::BearerTokens;
pub use faults::{Fault, FaultAction, Verb};
pub use pki::{DemoPki, IssuedCert, KeyKind, PkiError, PkiOptions, Sent};
pub use server::{DemoServer, ReceivedMessage, ServerConfig, TlsMode, TlsVersions};
pub use token_endpoint::{EndpointMode, TokenEndpoint, TokenEndpointConfig};
pub use wire::Mechanism;
