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

pub mod pki;
pub mod server;
#[cfg(test)]
mod tests;
pub mod token_endpoint;

pub use pki::{DemoPki, IssuedCert, KeyKind, PkiError, PkiOptions, Sent};
pub use server::{
    BearerTokens, DemoServer, Fault, FaultAction, Mechanism, ReceivedMessage, ServerConfig,
    TlsMode, TlsVersions, Verb,
};
pub use token_endpoint::{EndpointMode, TokenEndpoint, TokenEndpointConfig};
