//! A webhook receiver inside the test process, the way Alertmanager's `webhook_configs` posts:
//! every alert of every notification is recorded with the time it arrived, so that a test can
//! wait for a page, check its labels and annotations, and measure how long it took.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One alert of one webhook notification, as received.
#[derive(Clone, Debug)]
pub struct Notification {
    /// When the test received it.
    pub at: Instant,
    /// `firing` or `resolved`.
    pub status: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl Notification {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }

    pub fn alertname(&self) -> &str {
        self.label("alertname")
    }
}

/// The webhook receiver Alertmanager posts to (`POST /alerts`), on its own small runtime.
pub struct Webhook {
    pub url: String,
    received: Arc<Mutex<Vec<Notification>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Webhook {
    pub fn start() -> Webhook {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let received = Arc::new(Mutex::new(Vec::new()));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("binding the webhook");
        let addr = listener.local_addr().expect("webhook address");
        let sink = Arc::clone(&received);
        let app = axum::Router::new().route(
            "/alerts",
            axum::routing::post(move |body: axum::body::Bytes| {
                let sink = Arc::clone(&sink);
                async move {
                    record(&sink, &body);
                    "ok"
                }
            }),
        );
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Webhook {
            url: format!("http://{addr}/alerts"),
            received,
            _runtime: runtime,
        }
    }

    /// Every alert received so far, in order of arrival.
    pub fn received(&self) -> Vec<Notification> {
        self.received.lock().expect("webhook lock").clone()
    }

    /// Polls the received alerts until `check` returns something, or panics after `within`
    /// naming `what` and listing what did arrive.
    pub fn wait_until<T>(
        &self,
        within: Duration,
        what: &str,
        check: impl Fn(&[Notification]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            let all = self.received();
            if let Some(found) = check(&all) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} at the webhook within {within:?}; received:\n{}",
                summarize(&all)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Appends the alerts of one webhook body (Alertmanager's webhook format, version 4).
fn record(sink: &Mutex<Vec<Notification>>, body: &[u8]) {
    let at = Instant::now();
    let Ok(payload) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let strings = |v: &Value| -> BTreeMap<String, String> {
        v.as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let alerts = payload["alerts"].as_array().cloned().unwrap_or_default();
    let mut sink = sink.lock().expect("webhook lock");
    for alert in alerts {
        sink.push(Notification {
            at,
            status: alert["status"].as_str().unwrap_or_default().to_string(),
            labels: strings(&alert["labels"]),
            annotations: strings(&alert["annotations"]),
        });
    }
}

/// One line per received alert, for failure messages.
pub fn summarize(all: &[Notification]) -> String {
    let mut out = String::new();
    for n in all {
        let _ = writeln!(out, "  {} {:?}", n.status, n.labels);
    }
    out
}
