//! A finished probe's outcome as a scheduled target keeps it until its next result: the same
//! facts as [`ProbeOutcome`] in a few allocations instead of about sixty.
//!
//! Ten thousand targets each keep their latest outcome for the status pages and `/logs`, which
//! a person opens now and then; the metrics are rendered from the full outcome when it arrives.
//! A [`ProbeOutcome`] holds every reply line, command and address as a `String` of its own and
//! 160 bytes per step (about 5 KiB for a full send); kept, the text of a whole transcript is one
//! string with the end of each piece, a step is 48 bytes, the server's EHLO keywords are read
//! again from the reply they came from, and the certificate facts are the shared copies of
//! [`crate::tls::kept`]. [`KeptOutcome::outcome`] gives the full form back for a page.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use super::{DeliveryReport, ProbeOutcome};
use crate::smtp::extension::ServerInfo;
use crate::smtp::reply::{EnhancedCode, Reply};
use crate::smtp::session::SessionReport;
use crate::smtp::transcript::{Failure, Step, Transcript};
use crate::tls::TlsReport;
use crate::vocab::StepName;

/// A kept outcome (see the module's documentation).
#[derive(Debug)]
pub struct KeptOutcome {
    /// Wall-clock start.
    pub started_at: SystemTime,
    /// The whole probe.
    pub duration: Duration,
    /// The probe's failure.
    pub failure: Option<Failure>,
    /// The TLS session, certificate facts shared (see [`crate::tls::kept`]).
    pub tls: Option<Box<TlsReport>>,
    /// The delivery check, when configured.
    pub delivery: Option<Box<DeliveryReport>>,
    /// The token mail's id, when one was composed.
    pub probe_id: Option<Box<str>>,
    timeout: Duration,
    target: Box<str>,
    module: Box<str>,
    peer: Option<SocketAddr>,
    auth_mechanism: Option<&'static str>,
    server: Info,
    server_tls: Info,
    steps: Box<[KeptStep]>,
    /// Every step's command, local finding and reply lines, in order, one after the other.
    text: Box<str>,
    /// Where each piece of `text` ends.
    ends: Box<[u32]>,
    message_accepted: bool,
    cancelled: bool,
    message_configured: bool,
}

/// What EHLO said, kept as the step whose reply it was read from.
#[derive(Debug)]
enum Info {
    None,
    /// `ServerInfo::from_ehlo` of that step's reply.
    FromStep(u8),
    /// Not read from a kept reply (kept whole, so nothing is lost).
    Own(Box<ServerInfo>),
}

/// A step without its text: its pieces are the next ones of [`KeptOutcome::text`]: the command
/// when `sent`, the finding when `found`, then `lines` reply lines.
#[derive(Debug)]
struct KeptStep {
    offset_ns: u64,
    duration_ns: u64,
    failure: Option<Box<Failure>>,
    enhanced: Option<EnhancedCode>,
    lines: u32,
    /// The reply's code, 0 when no reply was read.
    code: u16,
    name: StepName,
    sent: bool,
    found: bool,
}

impl KeptOutcome {
    /// The compact form of `outcome` (its transcript's instants are not kept: nothing that
    /// reads a kept outcome counts from them).
    pub fn new(outcome: ProbeOutcome) -> KeptOutcome {
        let ProbeOutcome {
            target,
            module,
            started_at,
            duration,
            timeout,
            session,
            failure,
            probe_id,
            delivery,
            cancelled,
            message_configured,
        } = outcome;
        // Taken apart field by field: a field added to either does not compile until it is
        // kept here (or said to be not worth keeping, like the instants).
        let SessionReport {
            transcript,
            peer,
            server,
            server_tls,
            tls,
            auth_mechanism,
            message_accepted,
            message_accepted_at: _,
        } = session;
        let steps = transcript.steps();
        let mut text = String::new();
        let mut ends = Vec::new();
        let mut piece = |s: &str| {
            text.push_str(s);
            ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
        };
        let kept_steps = steps
            .iter()
            .map(|s| {
                if let Some(sent) = &s.sent {
                    piece(sent);
                }
                if let Some(found) = &s.found {
                    piece(found);
                }
                let lines = s.reply.as_ref().map_or(&[][..], |r| &r.lines[..]);
                lines.iter().for_each(|l| piece(l));
                KeptStep {
                    offset_ns: nanos(s.offset),
                    duration_ns: nanos(s.duration),
                    failure: s.failure.clone().map(Box::new),
                    enhanced: s.reply.as_ref().and_then(|r| r.enhanced),
                    lines: u32::try_from(lines.len()).unwrap_or(u32::MAX),
                    code: s.reply.as_ref().map_or(0, |r| r.code),
                    name: s.name,
                    sent: s.sent.is_some(),
                    found: s.found.is_some(),
                }
            })
            .collect();
        let info = |info: Option<ServerInfo>| match info {
            None => Info::None,
            // Read from an EHLO reply: only those are read again to find which (each reading
            // allocates).
            Some(info) => steps
                .iter()
                .position(|s| {
                    matches!(s.name, StepName::Ehlo | StepName::EhloTls)
                        && s.reply
                            .as_ref()
                            .is_some_and(|r| ServerInfo::from_ehlo(r) == info)
                })
                .and_then(|i| u8::try_from(i).ok())
                .map_or_else(|| Info::Own(Box::new(info)), Info::FromStep),
        };
        let server = info(server);
        let server_tls = info(server_tls);
        let tls = tls.map(|mut tls| {
            for cert in tls.chain.sent.iter_mut().chain(tls.chain.built.iter_mut()) {
                *cert = crate::tls::kept::kept(cert);
            }
            Box::new(tls)
        });
        KeptOutcome {
            started_at,
            duration,
            failure,
            tls,
            delivery: delivery.map(Box::new),
            probe_id: probe_id.map(String::into_boxed_str),
            timeout,
            target: target.into_boxed_str(),
            module: module.into_boxed_str(),
            peer,
            auth_mechanism,
            server,
            server_tls,
            steps: kept_steps,
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
            message_accepted,
            cancelled,
            message_configured,
        }
    }

    /// Whether every configured step passed.
    pub fn success(&self) -> bool {
        self.failure.is_none()
    }

    /// The provider's hint for the reply that failed the probe, as
    /// [`ProbeOutcome::provider_hint`] finds it, without expanding the whole outcome.
    pub fn provider_hint(&self) -> Option<&'static crate::smtp::hints::ProviderHint> {
        let failure = self.failure.as_ref()?;
        let mut pieces = self.pieces();
        let reply = self.steps.iter().find_map(|s| {
            pieces
                .by_ref()
                .take(usize::from(s.sent) + usize::from(s.found))
                .for_each(drop);
            let lines = pieces.by_ref().take(s.lines as usize);
            if s.failure.is_some() && s.name == failure.step {
                Some(s.reply(lines.map(str::to_string).collect()))
            } else {
                lines.for_each(drop);
                None
            }
        })??;
        crate::smtp::hints::lookup(&reply)
    }

    /// The pieces of [`KeptOutcome::text`], in order.
    fn pieces(&self) -> impl Iterator<Item = &str> {
        self.ends.iter().scan(0usize, |start, &end| {
            let end = end as usize;
            let piece = self.text.get(*start..end).unwrap_or_default();
            *start = end;
            Some(piece)
        })
    }

    /// The full outcome again, for a page or a transcript. Its transcript's instants count from
    /// now (the kept form has only the offsets, which is what every output prints).
    pub fn outcome(&self) -> ProbeOutcome {
        let mut pieces = self.pieces().map(str::to_string);
        let steps: Vec<Step> = self
            .steps
            .iter()
            .map(|s| {
                let sent = if s.sent { pieces.next() } else { None };
                let found = if s.found { pieces.next() } else { None };
                let lines: Vec<String> = pieces.by_ref().take(s.lines as usize).collect();
                Step {
                    name: s.name,
                    offset: Duration::from_nanos(s.offset_ns),
                    duration: Duration::from_nanos(s.duration_ns),
                    sent,
                    reply: s.reply(lines),
                    found,
                    failure: s.failure.as_deref().cloned(),
                }
            })
            .collect();
        let info = |info: &Info| match info {
            Info::None => None,
            Info::FromStep(i) => steps
                .get(usize::from(*i))
                .and_then(|s| s.reply.as_ref())
                .map(ServerInfo::from_ehlo),
            Info::Own(info) => Some(ServerInfo::clone(info)),
        };
        let server = info(&self.server);
        let server_tls = info(&self.server_tls);
        let mut session = SessionReport::recorded_in(Transcript::with_steps(Instant::now(), steps));
        session.peer = self.peer;
        session.server = server;
        session.server_tls = server_tls;
        session.tls = self.tls.as_deref().cloned();
        session.auth_mechanism = self.auth_mechanism;
        session.message_accepted = self.message_accepted;
        ProbeOutcome {
            target: self.target.to_string(),
            module: self.module.to_string(),
            started_at: self.started_at,
            duration: self.duration,
            timeout: self.timeout,
            session,
            failure: self.failure.clone(),
            probe_id: self.probe_id.as_deref().map(str::to_string),
            delivery: self.delivery.as_deref().cloned(),
            cancelled: self.cancelled,
            message_configured: self.message_configured,
        }
    }
}

impl KeptStep {
    /// The step's reply with its `lines`, if a reply was read.
    fn reply(&self, lines: Vec<String>) -> Option<Reply> {
        (self.code != 0).then_some(Reply {
            code: self.code,
            enhanced: self.enhanced,
            lines,
        })
    }
}

/// A step's time in nanoseconds (584 years fit).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_kept_in_48_bytes() {
        assert!(std::mem::size_of::<KeptStep>() <= 48);
        assert!(
            std::mem::size_of::<Step>() >= 150,
            "what the kept form saves"
        );
    }
}
