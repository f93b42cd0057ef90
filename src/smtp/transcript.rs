//! The transcript of one probe: every exchange as plain data (step, offset, duration, what was
//! sent, what came back). The metrics layer, the JSON writer and the human printer all read it.

use super::reply::Reply;
use crate::printable::shown;
use crate::vocab::{Reason, StepName};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One exchange with the server, or one local phase (resolve, connect, TLS handshake).
#[derive(Clone, Debug)]
pub struct Step {
    /// Which step.
    pub name: StepName,
    /// When it started, from the start of the probe.
    pub offset: Duration,
    /// How long it took (until the reply was complete, or until it failed).
    pub duration: Duration,
    /// The command line sent, without CRLF, with secrets masked (`AUTH PLAIN ****`).
    pub sent: Option<String>,
    /// The server's reply, when one was read.
    pub reply: Option<Reply>,
    /// What a local phase arrived at: the address (resolve, connect), the TLS version and
    /// cipher (tls_handshake).
    pub found: Option<String>,
    /// Set when this step failed.
    pub failure: Option<Failure>,
}

/// Why a probe failed, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The step the probe was in.
    pub step: StepName,
    /// The reason, from the finite vocabulary.
    pub reason: Reason,
    /// What happened, in words (the error or the server's reply): printable and bounded
    /// ([`crate::printable::shown`]), since it quotes the server.
    pub detail: String,
}

impl Failure {
    /// A failure in `step` for `reason`; `detail` is made printable and bounded here.
    pub fn new(step: StepName, reason: Reason, detail: impl Into<String>) -> Failure {
        Failure {
            step,
            reason,
            detail: shown(&detail.into()),
        }
    }
}

/// Told about a probe's steps while it runs, so that a person can follow it as it happens
/// (`smtp-prober probe` prints each line when it is known, like a mail client's debug log).
pub trait Watch: Send + Sync {
    /// A command of `step` (secrets masked) is being sent, `offset` after the probe's start.
    fn sending(&self, step: StepName, offset: Duration, shown: &str);
    /// A step ended (passed or failed).
    fn ended(&self, step: &Step);
}

/// A shared [`Watch`].
#[derive(Clone)]
pub struct Watcher(pub Arc<dyn Watch>);

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watcher")
    }
}

/// Steps in the order they ran, timed against one start instant.
#[derive(Clone, Debug)]
pub struct Transcript {
    started: Instant,
    steps: Vec<Step>,
    /// Told about each step as it happens, when someone follows the probe.
    watcher: Option<Watcher>,
}

impl Transcript {
    /// An empty transcript whose offsets count from `started`.
    pub fn new(started: Instant) -> Transcript {
        Transcript {
            started,
            steps: Vec::with_capacity(16),
            watcher: None,
        }
    }

    /// A transcript of `steps` that ran, their offsets counting from `started`.
    pub fn with_steps(started: Instant, steps: Vec<Step>) -> Transcript {
        Transcript {
            started,
            steps,
            watcher: None,
        }
    }

    /// The same transcript, telling `watcher` about each step from now on (none: nobody).
    pub fn watched_by(mut self, watcher: Option<Watcher>) -> Transcript {
        self.watcher = watcher;
        self
    }

    /// Says that the command `shown` of a step that began at `began` is being sent.
    pub fn sending(&self, step: StepName, began: Instant, shown: &str) {
        if let Some(w) = &self.watcher {
            w.0.sending(step, began.saturating_duration_since(self.started), shown);
        }
    }

    /// The instant offsets count from.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Starts recording a step that began at `began`: say what was sent and what came back,
    /// then end it with [`StepRecord::ok`] or [`StepRecord::fail`]. It lasts until then, unless
    /// [`StepRecord::took`] says otherwise.
    pub fn record(&mut self, name: StepName, began: Instant) -> StepRecord<'_> {
        StepRecord {
            transcript: self,
            name,
            began,
            duration: None,
            sent: None,
            reply: None,
            found: None,
        }
    }

    /// The steps so far.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The step of that name, if it ran (the last one, if it ran twice).
    pub fn step(&self, name: StepName) -> Option<&Step> {
        self.steps.iter().rev().find(|s| s.name == name)
    }

    /// The failure recorded on a step, if any.
    pub fn failure(&self) -> Option<&Failure> {
        self.steps.iter().find_map(|s| s.failure.as_ref())
    }
}

/// A step being recorded (see [`Transcript::record`]).
#[must_use = "a step is recorded only by ok(), fail() or finish()"]
pub struct StepRecord<'t> {
    transcript: &'t mut Transcript,
    name: StepName,
    began: Instant,
    duration: Option<Duration>,
    sent: Option<String>,
    reply: Option<Reply>,
    found: Option<String>,
}

impl<'t> StepRecord<'t> {
    /// The command line sent, without CRLF, secrets masked.
    pub fn sent(mut self, shown: impl Into<Option<String>>) -> Self {
        self.sent = shown.into();
        self
    }

    /// The server's reply.
    pub fn reply(mut self, reply: impl Into<Option<Reply>>) -> Self {
        self.reply = reply.into();
        self
    }

    /// What a local phase arrived at (an address, a TLS version and cipher).
    pub fn found(mut self, found: impl Into<String>) -> Self {
        self.found = Some(found.into());
        self
    }

    /// A step that ran at another time and took `duration` (a token fetch before the
    /// connection): it is placed among the steps in order of its start.
    pub fn took(mut self, duration: Duration) -> Self {
        self.duration = Some(duration);
        self
    }

    /// The step passed.
    pub fn ok(self) -> &'t Step {
        self.finish(None)
    }

    /// The step failed for `reason`.
    pub fn fail(self, reason: Reason, detail: impl Into<String>) -> &'t Step {
        let failure = Failure::new(self.name, reason, detail);
        self.finish(Some(failure))
    }

    /// The step ended, with `failure` when it failed.
    pub fn finish(self, failure: Option<Failure>) -> &'t Step {
        let t = self.transcript;
        let offset = self.began.saturating_duration_since(t.started);
        let step = Step {
            name: self.name,
            offset,
            duration: self
                .duration
                .unwrap_or_else(|| Instant::now().saturating_duration_since(self.began)),
            sent: self.sent,
            reply: self.reply,
            found: self.found,
            failure,
        };
        let at = match self.duration {
            // Placed by its start among the steps that ran around it.
            Some(_) => t
                .steps
                .iter()
                .position(|s| s.offset > offset)
                .unwrap_or(t.steps.len()),
            None => t.steps.len(),
        };
        t.steps.insert(at, step);
        if let Some(w) = &t.watcher {
            w.0.ended(&t.steps[at]);
        }
        &t.steps[at]
    }
}
