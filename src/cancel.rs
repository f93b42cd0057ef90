//! Cooperative cancellation of a probe. Aborting a task would drop its connection mid-command;
//! a cancelled session instead stops at its next wait, says QUIT (briefly, best effort) and
//! closes, as a well-behaved client does when the exporter shuts down or a reload replaces a
//! target.

use tokio::sync::watch;

/// The side that cancels.
#[derive(Debug)]
pub struct Canceller(watch::Sender<bool>);

/// The side a probe watches. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Cancel(watch::Receiver<bool>);

impl Canceller {
    /// A canceller and the signal it controls.
    pub fn new() -> (Canceller, Cancel) {
        let (tx, rx) = watch::channel(false);
        (Canceller(tx), Cancel(rx))
    }

    /// Cancels every probe watching this signal.
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }
}

impl Cancel {
    /// A signal that never fires (one-shot probes, `/probe` requests).
    pub fn never() -> Cancel {
        let (_, rx) = watch::channel(false);
        Cancel(rx)
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once cancellation is requested; never, for [`Cancel::never`].
    pub async fn cancelled(&self) {
        let mut rx = self.0.clone();
        loop {
            if *rx.borrow_and_update() {
                return;
            }
            if rx.changed().await.is_err() {
                // The canceller is gone without cancelling: nothing can fire any more.
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn fires_once_cancelled_and_never_otherwise() {
        let (canceller, cancel) = Canceller::new();
        assert!(!cancel.is_cancelled());
        let waiting = tokio::spawn({
            let cancel = cancel.clone();
            async move { cancel.cancelled().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiting.is_finished());
        canceller.cancel();
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .unwrap()
            .unwrap();
        assert!(cancel.is_cancelled());
        // Already cancelled: resolves at once.
        tokio::time::timeout(Duration::from_millis(100), cancel.cancelled())
            .await
            .unwrap();

        let never = Cancel::never();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), never.cancelled())
                .await
                .is_err()
        );
        let (dropped, cancel) = Canceller::new();
        drop(dropped);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), cancel.cancelled())
                .await
                .is_err()
        );
    }
}
