//! The transcript of one probe: every exchange as plain data (step, offset, duration, what was
//! sent, what came back). The metrics layer, the JSON writer and the human printer all read it.

use super::reply::Reply;
use crate::vocab::{Reason, StepName};
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
    /// What happened, in words (the error or the server's reply).
    pub detail: String,
}

impl Failure {
    /// A failure in `step` for `reason`.
    pub fn new(step: StepName, reason: Reason, detail: impl Into<String>) -> Failure {
        Failure {
            step,
            reason,
            detail: detail.into(),
        }
    }
}

/// Steps in the order they ran, timed against one start instant.
#[derive(Clone, Debug)]
pub struct Transcript {
    started: Instant,
    steps: Vec<Step>,
}

impl Transcript {
    /// An empty transcript whose offsets count from `started`.
    pub fn new(started: Instant) -> Transcript {
        Transcript {
            started,
            steps: Vec::with_capacity(16),
        }
    }

    /// The instant offsets count from.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Appends a step that began at `began` and ended now.
    pub fn record(
        &mut self,
        name: StepName,
        began: Instant,
        sent: Option<String>,
        reply: Option<Reply>,
        failure: Option<Failure>,
    ) -> &Step {
        let now = Instant::now();
        self.steps.push(Step {
            name,
            offset: began.saturating_duration_since(self.started),
            duration: now.saturating_duration_since(began),
            sent,
            reply,
            failure,
        });
        self.steps.last().expect("just pushed")
    }

    /// Adds a step that ran at another time (a token fetch before the connection), keeping
    /// the steps in order of their start.
    pub fn insert(
        &mut self,
        name: StepName,
        began: Instant,
        duration: Duration,
        sent: Option<String>,
        reply: Option<Reply>,
        failure: Option<Failure>,
    ) {
        let offset = began.saturating_duration_since(self.started);
        let at = self
            .steps
            .iter()
            .position(|s| s.offset > offset)
            .unwrap_or(self.steps.len());
        self.steps.insert(
            at,
            Step {
                name,
                offset,
                duration,
                sent,
                reply,
                failure,
            },
        );
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
