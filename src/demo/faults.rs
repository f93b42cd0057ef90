//! The demo server's fault DSL: at any [`Verb`] of the conversation, another reply, a delay, a
//! closed connection, silence, garbage, an endless or a drip-fed reply, set with the builder
//! methods of [`ServerConfig`] (`reply_to`, `delay`, `close_at`, …). The session applies them
//! (`Session::fault`).

use super::server::ServerConfig;
use std::time::Duration;

/// A point of the conversation where a fault can be injected: the server's answer to it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    /// The 220 greeting on connect.
    Greeting,
    /// EHLO or HELO before any STARTTLS (also the one over implicit TLS).
    Ehlo,
    /// EHLO or HELO after STARTTLS.
    EhloTls,
    /// The STARTTLS command.
    Starttls,
    /// The TLS handshake itself (after the 220 to STARTTLS, or on connect with implicit TLS):
    /// a reply, raw bytes or a close here replace the handshake.
    TlsHandshake,
    /// The AUTH command; a scripted reply replaces the whole SASL exchange.
    Auth,
    /// MAIL FROM.
    Mail,
    /// RCPT TO (every recipient).
    Rcpt,
    /// DATA (the 354).
    Data,
    /// The end of the message data (the reply after the final dot).
    EndOfData,
    /// RSET.
    Rset,
    /// NOOP.
    Noop,
    /// QUIT.
    Quit,
}

/// What the server does instead of (or besides) its normal answer at a [`Verb`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum FaultAction {
    /// Answer normally (with [`Fault::delay`], a slow server).
    #[default]
    Normal,
    /// Send this reply. Lines are separated by `\n`; CRLFs are added. A 4xx or 5xx reply
    /// refuses the verb: nothing changes. A 2xx or 3xx reply lets the verb run as usual and
    /// replaces the text of its final reply (custom banners, queue ids, EHLO keywords).
    Reply(String),
    /// Close the connection without answering.
    Close,
    /// Never answer: read and discard until the client gives up (or the idle timeout).
    Stall,
    /// Send these bytes instead of a reply (garbage, a giant line without CRLF, …), then carry
    /// on reading commands.
    Raw(Vec<u8>),
    /// Start a multiline reply (`250-…`) that never ends.
    EndlessReply,
    /// Send this reply one byte at a time, `interval` apart (a drip-feeding server defeats a
    /// timeout that is only per read). Nothing changes, as for a refusal.
    Drip {
        /// The reply, as for [`FaultAction::Reply`].
        reply: String,
        /// Pause after each byte.
        interval: Duration,
    },
}

/// A fault at one verb: an optional delay, then an action.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Fault {
    /// Wait this long before acting (pending replies are sent first).
    pub delay: Duration,
    /// What to do then.
    pub action: FaultAction,
}

impl ServerConfig {
    fn fault_mut(&mut self, verb: Verb) -> &mut Fault {
        self.faults.entry(verb).or_default()
    }

    /// Answers `verb` with `reply` (see [`FaultAction::Reply`]), e.g.
    /// `reply_to(Verb::Rcpt, "550 5.1.1 <x>: Recipient address rejected")`.
    pub fn reply_to(mut self, verb: Verb, reply: impl Into<String>) -> Self {
        self.fault_mut(verb).action = FaultAction::Reply(reply.into());
        self
    }

    /// Waits `delay` before answering `verb` (combines with the other faults).
    pub fn delay(mut self, verb: Verb, delay: Duration) -> Self {
        self.fault_mut(verb).delay = delay;
        self
    }

    /// Closes the connection instead of answering `verb`.
    pub fn close_at(mut self, verb: Verb) -> Self {
        self.fault_mut(verb).action = FaultAction::Close;
        self
    }

    /// Never answers `verb`.
    pub fn stall_at(mut self, verb: Verb) -> Self {
        self.fault_mut(verb).action = FaultAction::Stall;
        self
    }

    /// Sends `bytes` instead of answering `verb`.
    pub fn raw_at(mut self, verb: Verb, bytes: impl Into<Vec<u8>>) -> Self {
        self.fault_mut(verb).action = FaultAction::Raw(bytes.into());
        self
    }

    /// Answers `verb` with a multiline reply that never ends.
    pub fn endless_at(mut self, verb: Verb) -> Self {
        self.fault_mut(verb).action = FaultAction::EndlessReply;
        self
    }

    /// Answers `verb` with `reply`, one byte every `interval`.
    pub fn drip_at(mut self, verb: Verb, reply: impl Into<String>, interval: Duration) -> Self {
        self.fault_mut(verb).action = FaultAction::Drip {
            reply: reply.into(),
            interval,
        };
        self
    }
}
