//! The status pages in a real browser: Debian's headless Chromium, driven over WebDriver by
//! chromedriver (Debian's `chromium-driver`, the same build) through the `fantoccini` client.
//! WebDriver rather than `chromium --dump-dom`/`--screenshot` because the checks are about what a
//! person sees, which only the laid-out page knows: that the overview fits a 1400 px window, that
//! each step's label and bar are on screen, that the hint is displayed, that the page loads
//! nothing from outside.
//!
//! Targets: a healthy submission with AUTH and a token mail, a server that leaves out its
//! intermediate, one whose leaf expired 698 days ago, and one that rejects the recipient with a
//! long reply (under a long name, for the layout). Screenshots are kept in
//! `target/tmp/status-page/` (the paths are printed).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use smtp_prober::demo::{DemoPki, PkiOptions, ServerConfig, Verb};
use smtp_prober::vocab::Reason;
use support::exporter::{Exporter, Files, Servers};
use support::programs::{find_program, installed};
use support::prometheus::free_port;

const WIDTH: u32 = 1400;
const LONG_NAME: &str = "recipient-rejected-by-the-relay-of-the-identity-provider-eu-west";
const EXPIRED_DAYS: u64 = 698;

/// Where the screenshots go.
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&dir).expect("artifact directory");
    dir
}

/// chromedriver in its own process group, stopped with the browsers it started on drop.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Driver {
    fn start() -> Driver {
        use std::os::unix::process::CommandExt as _;
        let program = find_program("chromedriver").expect("chromedriver");
        let profile = tempfile::tempdir().expect("profile directory");
        for _ in 0..3 {
            let port = free_port();
            let mut child = Command::new(&program)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("starting chromedriver");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Driver {
                        child,
                        url: format!("http://127.0.0.1:{port}"),
                        _profile: profile,
                    };
                }
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("chromedriver did not start");
    }

    /// A headless Chromium session with a 1400 px wide window. The flags keep Chromium off
    /// the network (this machine has none beyond loopback) and away from the user's profile.
    async fn browser(&self) -> Client {
        let chromium = find_program("chromium").expect("chromium");
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                    format!("--user-data-dir={}", self._profile.path().display()),
                    format!("--window-size={WIDTH},1000"),
                ]
            }
        });
        let capabilities = match capabilities {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a WebDriver session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group: chromedriver and the browsers it started.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// The configuration: four targets probed every second.
fn config(files: &Files, servers: &mut Servers, expired_root: &Path) -> String {
    let healthy = servers.healthy();
    let leaf_only = servers.leaf_only();
    let mut expired = PkiOptions::new(&["localhost"]);
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();
    expired.leaf_not_before = now - day * (EXPIRED_DAYS as u32 + 365);
    expired.leaf_not_after = now - day * EXPIRED_DAYS as u32;
    let pki = DemoPki::with_options(&expired).expect("expired PKI");
    std::fs::write(expired_root, pki.root_pem()).expect("root");
    let expired = servers.start(ServerConfig {
        pki: Arc::new(pki),
        ..ServerConfig::default()
    });
    let rejecting = servers.start(ServerConfig::default().reply_to(
        Verb::Rcpt,
        format!(
            "550 5.7.1 <inbox@example.test>: Recipient address rejected: {}",
            "policy says no; ".repeat(20)
        ),
    ));
    let root = files.dir.path().join("root.pem");
    let password = files.dir.path().join("password");
    format!(
        r#"scheduler: {{min_send_interval: 0s}}
modules:
  submission:
    timeout: 5s
    tls: starttls
    ehlo: prober.test
    tls_config: {{server_name: localhost, trust: [], ca_files: ['{root}']}}
    auth: {{username: probe, password_file: '{password}'}}
    message: {{from: probe@example.test, to: [inbox@example.test]}}
  starttls:
    timeout: 5s
    tls: starttls
    tls_config: {{server_name: localhost, trust: [], ca_files: ['{root}']}}
  starttls_expired:
    timeout: 5s
    tls: starttls
    tls_config: {{server_name: localhost, trust: [], ca_files: ['{expired_root}']}}
targets:
  - {{name: healthy-submission, target: '{healthy}', module: submission, interval: 1s}}
  - {{name: missing-intermediate, target: '{leaf_only}', module: starttls, interval: 1s}}
  - {{name: expired-leaf, target: '{expired}', module: starttls_expired, interval: 1s}}
  - {{name: {LONG_NAME}, target: '{rejecting}', module: submission, interval: 1s}}
"#,
        root = root.display(),
        password = password.display(),
        expired_root = expired_root.display(),
    )
}

/// Waits until every target has two results (so the strip has something to show).
fn wait_for_results(exporter: &Exporter, names: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = exporter.get("/metrics").body;
        let done = names.iter().all(|name| {
            page.lines()
                .filter(|l| l.starts_with(&format!("smtp_prober_probes_total{{name=\"{name}\"")))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
                >= 2.0
        });
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "targets not probed:\n{page}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The step names of a target's last probe, from its `/metrics` series.
fn steps_on_metrics(exporter: &Exporter, name: &str) -> Vec<String> {
    let page = exporter.get("/metrics").body;
    let prefix = format!("probe_smtp_step_duration_seconds{{name=\"{name}\"");
    let mut steps: Vec<String> = page
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| {
            let rest = &l[l.find("step=\"")? + 6..];
            Some(rest[..rest.find('"')?].to_string())
        })
        .collect();
    steps.sort();
    steps
}

async fn screenshot(client: &Client, file: &str) -> PathBuf {
    // The whole page, not only the window: the screenshot is made at the page's full height.
    let height = client
        .execute("return document.documentElement.scrollHeight", vec![])
        .await
        .expect("page height")
        .as_u64()
        .unwrap_or(1000)
        .clamp(600, 4000) as u32;
    client
        .set_window_size(WIDTH, height)
        .await
        .expect("resizing");
    let png = client.screenshot().await.expect("screenshot");
    client.set_window_size(WIDTH, 1000).await.expect("resizing");
    let path = artifacts().join(file);
    std::fs::write(&path, png).expect("writing the screenshot");
    support::programs::say(&format!("status_page: screenshot {}", path.display()));
    path
}

/// The text of the one element `locator` finds.
async fn text_of(client: &Client, locator: Locator<'_>) -> String {
    let element = client
        .find(locator)
        .await
        .unwrap_or_else(|e| panic!("finding an element: {e}"));
    element.text().await.expect("its text")
}

/// The expired leaf's validity in words ("expired 698.0 days ago"), never as negative days.
fn assert_expired_in_words(text: &str) {
    assert!(text.contains(&format!("expired {EXPIRED_DAYS}")), "{text}");
    assert!(text.contains("days ago"), "{text}");
    assert!(!text.contains(&format!("-{EXPIRED_DAYS}")), "{text}");
}

async fn js(client: &Client, script: &str) -> Value {
    client
        .execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("{script}: {e}"))
}

/// No horizontal scrolling at 1400 px, and nothing loaded but the page itself.
async fn fits_and_is_self_contained(client: &Client, page: &str) {
    let widths = js(
        client,
        "return [document.documentElement.scrollWidth, window.innerWidth]",
    )
    .await;
    let (scroll, inner) = (widths[0].as_u64().unwrap(), widths[1].as_u64().unwrap());
    assert_eq!(inner, u64::from(WIDTH), "{page}: window width");
    assert!(
        scroll <= inner,
        "{page}: {scroll} px wide in a {inner} px window"
    );
    let outside = js(
        client,
        "return [performance.getEntriesByType('resource').map(e => e.name), \
         document.querySelectorAll('script, link:not([href^=\"data:\"]), img, iframe, object, embed').length]",
    )
    .await;
    assert_eq!(outside, json!([[], 0]), "{page} loads other resources");
    let refresh = js(
        client,
        "const m = document.querySelector('meta[http-equiv=refresh]'); \
         return m ? Number(m.content) : 0",
    )
    .await;
    let refresh = refresh.as_f64().unwrap();
    assert!(
        refresh > 0.0 && refresh <= 60.0,
        "{page}: refresh {refresh}"
    );
}

/// The waterfall's rows as the browser lays them out.
async fn waterfall(client: &Client) -> Vec<Value> {
    js(
        client,
        "const vw = window.innerWidth;
         return Array.from(document.querySelectorAll('#waterfall tbody tr')).map(r => {
           const label = r.querySelector('td strong').getBoundingClientRect();
           const bar = r.querySelector('.bar').getBoundingClientRect();
           const lane = r.querySelector('.lane').getBoundingClientRect();
           return {
             step: r.dataset.step,
             label: r.querySelector('td strong').innerText,
             labelShown: label.width > 0 && label.height > 0 && label.right <= vw,
             barWidth: bar.width,
             barInLane: bar.left >= lane.left - 0.5 && bar.right <= lane.right + 0.5,
             failed: r.classList.contains('failed'),
             text: r.innerText,
           };
         });",
    )
    .await
    .as_array()
    .cloned()
    .expect("rows")
}

#[test]
fn status_pages_in_chromium() {
    if !installed(
        "status_pages_in_chromium",
        &["chromium", "chromedriver"],
        "chromium and chromium-driver",
    ) {
        return;
    }
    let mut servers = Servers::new();
    let files = Files::new();
    let expired_root = files.dir.path().join("expired-root.pem");
    files.write(&config(&files, &mut servers, &expired_root));
    let exporter = Exporter::start(&[&files.config_arg()]);
    let names = [
        "healthy-submission",
        "missing-intermediate",
        "expired-leaf",
        LONG_NAME,
    ];
    wait_for_results(&exporter, &names);
    let base = format!("http://{}", exporter.addr);
    let driver = Driver::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = driver.browser().await;
        overview(&client, &base).await;
        failing_target(&client, &base, &exporter).await;
        healthy_target(&client, &base, &exporter).await;
        expired_target(&client, &base).await;
        reload_failed(&client, &base, &exporter, &files).await;
        client.close().await.expect("closing the session");
    });
}

async fn overview(client: &Client, base: &str) {
    client.goto(&format!("{base}/")).await.expect("overview");
    fits_and_is_self_contained(client, "overview").await;
    let rows = client
        .find_all(Locator::Css("#targets tbody tr"))
        .await
        .expect("rows");
    assert_eq!(rows.len(), 4);
    // The failing target: reason, step and hint on screen, not in a tooltip.
    let row = client
        .find(Locator::Css("tr[data-target='missing-intermediate']"))
        .await
        .expect("the failing row");
    let text = row.text().await.unwrap();
    assert!(
        text.contains("cert_incomplete_chain at tls_handshake"),
        "{text}"
    );
    let hint = row.find(Locator::Css(".hint")).await.expect("a hint");
    assert!(hint.is_displayed().await.unwrap());
    assert_eq!(
        hint.text().await.unwrap(),
        Reason::CertIncompleteChain.hint()
    );
    // The strip of recent results, and the links.
    let marks = row.find_all(Locator::Css(".strip i")).await.unwrap();
    assert!(marks.len() >= 2, "{} marks", marks.len());
    for mark in marks {
        assert_eq!(mark.attr("class").await.unwrap().as_deref(), Some("f"));
    }
    let links: Vec<String> = {
        let mut out = Vec::new();
        for a in row.find_all(Locator::Css("a")).await.unwrap() {
            out.push(a.attr("href").await.unwrap().unwrap_or_default());
        }
        out
    };
    assert!(
        links.contains(&"/target?name=missing-intermediate".to_string()),
        "{links:?}"
    );
    assert!(
        links.contains(&"/logs?target=missing-intermediate".to_string()),
        "{links:?}"
    );
    // The expired leaf in words, never as negative days.
    let expired = text_of(client, Locator::Css("tr[data-target='expired-leaf']")).await;
    assert_expired_in_words(&expired);
    screenshot(client, "overview.png").await;
}

async fn failing_target(client: &Client, base: &str, exporter: &Exporter) {
    client
        .goto(&format!("{base}/target?name=missing-intermediate"))
        .await
        .expect("target page");
    fits_and_is_self_contained(client, "missing-intermediate").await;
    let rows = waterfall(client).await;
    let mut shown: Vec<String> = rows
        .iter()
        .map(|r| r["step"].as_str().unwrap().to_string())
        .collect();
    shown.sort();
    assert_eq!(shown, steps_on_metrics(exporter, "missing-intermediate"));
    for r in &rows {
        assert_eq!(r["label"], r["step"], "{r}");
        assert_eq!(r["labelShown"], true, "{r}");
        assert!(r["barWidth"].as_f64().unwrap() >= 1.0, "{r}");
        assert_eq!(r["barInLane"], true, "{r}");
    }
    let failed: Vec<&Value> = rows.iter().filter(|r| r["failed"] == true).collect();
    assert_eq!(failed.len(), 1, "{rows:?}");
    assert_eq!(failed[0]["step"], "tls_handshake");
    assert!(failed[0]["text"]
        .as_str()
        .unwrap()
        .contains("failed: cert_incomplete_chain"));
    // Reply codes are on the rows that had replies.
    let greeting = rows.iter().find(|r| r["step"] == "greeting").unwrap();
    assert!(
        greeting["text"].as_str().unwrap().contains("220 "),
        "{greeting}"
    );
    assert_eq!(
        text_of(client, Locator::Id("reason")).await,
        "cert_incomplete_chain"
    );
    let hint = client.find(Locator::Id("hint")).await.unwrap();
    assert!(hint.is_displayed().await.unwrap());
    assert!(hint
        .text()
        .await
        .unwrap()
        .contains(Reason::CertIncompleteChain.hint()));
    let logs = client
        .find(Locator::Css("#facts a"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap();
    assert_eq!(logs.as_deref(), Some("/logs?target=missing-intermediate"));
    let results = client
        .find_all(Locator::Css("#results tbody tr"))
        .await
        .unwrap();
    assert!(results.len() >= 2);
    screenshot(client, "target-missing-intermediate.png").await;
}

async fn healthy_target(client: &Client, base: &str, exporter: &Exporter) {
    client
        .goto(&format!("{base}/target?name=healthy-submission"))
        .await
        .expect("target page");
    fits_and_is_self_contained(client, "healthy-submission").await;
    let rows = waterfall(client).await;
    let order: Vec<&str> = rows.iter().map(|r| r["step"].as_str().unwrap()).collect();
    let expected: Vec<&str> = support::outcome::FULL_STARTTLS_SEND
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(order, expected, "every step, in the order it ran");
    let mut sorted = expected.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    sorted.sort();
    assert_eq!(sorted, steps_on_metrics(exporter, "healthy-submission"));
    for (r, (_, code)) in rows.iter().zip(support::outcome::FULL_STARTTLS_SEND) {
        assert_eq!(r["labelShown"], true, "{r}");
        assert_eq!(r["failed"], false, "{r}");
        if let Some(code) = code {
            assert!(
                r["text"].as_str().unwrap().contains(&format!("{code} ")),
                "{r}"
            );
        }
    }
    // Bars follow the time axis: each starts no earlier than the one before.
    let lefts = js(
        client,
        "return Array.from(document.querySelectorAll('#waterfall .bar'))\
         .map(b => b.getBoundingClientRect().left)",
    )
    .await;
    let lefts: Vec<f64> = serde_json::from_value(lefts).unwrap();
    assert!(lefts.windows(2).all(|w| w[0] <= w[1] + 0.5), "{lefts:?}");
    // The password never reaches the page.
    let source = client.source().await.unwrap();
    assert!(source.contains("AUTH PLAIN ****"));
    assert!(!source.contains("secret"), "the AUTH secret is on the page");
    assert!(client.find(Locator::Id("hint")).await.is_err());
    screenshot(client, "target-healthy-submission.png").await;
}

async fn expired_target(client: &Client, base: &str) {
    client
        .goto(&format!("{base}/target?name=expired-leaf"))
        .await
        .expect("target page");
    assert_eq!(text_of(client, Locator::Id("reason")).await, "cert_expired");
    assert_expired_in_words(&text_of(client, Locator::Id("certificates")).await);
    screenshot(client, "target-expired-leaf.png").await;
}

async fn reload_failed(client: &Client, base: &str, exporter: &Exporter, files: &Files) {
    client.goto(&format!("{base}/")).await.unwrap();
    assert!(client.find(Locator::Id("reload-failed")).await.is_err());
    let good = std::fs::read_to_string(files.config()).unwrap();
    files.write(&good.replace("interval: 1s}", "intervall: 1s}"));
    assert_eq!(exporter.post("/-/reload").status, 500);
    client.goto(&format!("{base}/")).await.unwrap();
    let banner = client
        .find(Locator::Id("reload-failed"))
        .await
        .expect("the banner");
    assert!(banner.is_displayed().await.unwrap());
    let text = banner.text().await.unwrap();
    assert!(
        text.contains("The last configuration reload failed"),
        "{text}"
    );
    assert!(text.contains("unknown key \"intervall\""), "{text}");
    fits_and_is_self_contained(client, "overview with the banner").await;
    screenshot(client, "overview-reload-failed.png").await;
    // A good reload takes the banner away.
    files.write(&good);
    assert_eq!(exporter.post("/-/reload").status, 200);
    client.goto(&format!("{base}/")).await.unwrap();
    assert!(client.find(Locator::Id("reload-failed")).await.is_err());
}
