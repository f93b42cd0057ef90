//! The delivery check through Microsoft Graph (`delivery.graph`) against a local HTTPS endpoint
//! in this test that speaks the Graph subset the check uses: `GET
//! /v1.0/users/{user}/mailFolders/{folder}/messages` with `$filter` on `internetMessageId` (or
//! `receivedDateTime lt`, for the sweep), `$select` and `$top`, and `DELETE
//! /v1.0/users/{user}/messages/{id}`, each with a bearer token checked against the registry the
//! demo token endpoint issues into (scope `https://graph.microsoft.com/.default`). Errors come
//! as Graph sends them (`{"error":{"code":…,"message":…}}`).
//!
//! The mail itself goes to the demo SMTP server; a delivery task of this test moves every mail
//! it accepts into the fake mailbox with the trace Exchange Online would add (two hops, and
//! failing Authentication-Results for a Junk recipient, filed in `junkemail`), or holds it until
//! released.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use smtp_prober::demo::{
    BearerTokens, DemoPki, DemoServer, Sent, ServerConfig, TlsMode as DemoTls, TokenEndpoint,
    TokenEndpointConfig,
};
use smtp_prober::probe::delivery;
use smtp_prober::probe::module::{
    DeliverySettings, GraphAccess, MailboxAccess, MessageSettings, Module, OAuth2Settings, TlsMode,
};
use smtp_prober::probe::target::parse_target;
use smtp_prober::probe::{self, Budget, PreparedModule, ProbeOutcome};
use smtp_prober::report;
use smtp_prober::secret::Secret;
use smtp_prober::smtp::command::Mailbox;
use smtp_prober::tls::TlsSettings;
use smtp_prober::vocab::{Reason, StepName};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const USER: &str = "mfa-inbox@contoso.example";
const SENDER: &str = "mfa-probe@contoso.example";
const CLIENT_ID: &str = "graph-reader";
const CLIENT_SECRET: &str = "graph-client-secret-do-not-print";
const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// One message in the fake mailbox.
#[derive(Clone, Debug)]
struct Stored {
    id: String,
    folder: String,
    internet_message_id: String,
    received: i64,
    from: String,
    headers: Vec<(String, String)>,
}

/// What the fake Graph holds and was asked.
#[derive(Default)]
struct GraphState {
    messages: Vec<Stored>,
    held: Vec<Stored>,
    hold: bool,
    /// Answer every request with this status and a Graph error body.
    refuse: Option<(u16, &'static str)>,
    /// Answer GETs with a body this long.
    oversized: Option<usize>,
    requests: Vec<(String, String)>,
    next_id: u64,
}

struct FakeGraph {
    addr: SocketAddr,
    state: Arc<Mutex<GraphState>>,
    _server: tokio::task::JoinHandle<()>,
    _delivery: tokio::task::JoinHandle<()>,
}

fn lock(state: &Mutex<GraphState>) -> std::sync::MutexGuard<'_, GraphState> {
    state.lock().unwrap()
}

impl FakeGraph {
    /// Serves Graph over HTTPS (the demo PKI's `localhost`), delivering what `smtp` accepts.
    async fn start(tokens: BearerTokens, smtp: Arc<DemoServer>) -> FakeGraph {
        let state = Arc::new(Mutex::new(GraphState::default()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = acceptor();
        let served = state.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let state = served.clone();
                let tokens = tokens.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        let tokens = tokens.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(handle(request, &state, &tokens))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        let delivered = state.clone();
        let delivery = tokio::spawn(async move {
            let mut seen = 0;
            loop {
                let received = smtp.received();
                for mail in received.iter().skip(seen) {
                    let stored = deliver(&delivered, mail);
                    let mut s = lock(&delivered);
                    if s.hold {
                        s.held.push(stored);
                    } else {
                        s.messages.push(stored);
                    }
                }
                seen = received.len();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        FakeGraph {
            addr,
            state,
            _server: server,
            _delivery: delivery,
        }
    }

    fn endpoint(&self) -> String {
        format!("https://localhost:{}/v1.0", self.addr.port())
    }

    fn release(&self) {
        let mut s = lock(&self.state);
        let now = unix_now();
        let held: Vec<Stored> = s.held.drain(..).collect();
        for mut m in held {
            m.received = now;
            m.headers
                .insert(0, received_field("EXHUB02", "EXMBX01", now));
            s.messages.push(m);
        }
    }

    fn count(&self) -> usize {
        lock(&self.state).messages.len()
    }

    fn requests(&self) -> Vec<(String, String)> {
        lock(&self.state).requests.clone()
    }
}

fn acceptor() -> TlsAcceptor {
    let pki = DemoPki::localhost();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.chain(&Sent::Full), pki.leaf_key())
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn rfc2822(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap()
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// An Exchange Online hop from `from` to `by`.
fn received_field(from: &str, by: &str, at: i64) -> (String, String) {
    (
        "Received".into(),
        format!(
            "from {from}.eurprd02.prod.outlook.com (2603:10a6:20b:100::12) by {by}.eurprd02.prod.outlook.com \
             (2603:10a6:10:1f0::16) with Microsoft SMTP Server (version=TLS1_2, \
             cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.7633.20; {}",
            rfc2822(at)
        ),
    )
}

/// The fake mailbox's copy of a mail the SMTP server accepted: its own header fields, two
/// Exchange hops on top, and for a Junk recipient failing verdicts and the `junkemail` folder.
fn deliver(state: &Mutex<GraphState>, mail: &smtp_prober::demo::ReceivedMessage) -> Stored {
    let text = String::from_utf8_lossy(&mail.data).to_string();
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    let message_id = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("message-id"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let now = unix_now();
    let junk = mail.rcpts.iter().any(|r| r.contains("junk"));
    let mut trace = vec![
        received_field("EXHUB01", "EXMBX01", now),
        received_field("EXEDGE01", "EXHUB01", now - 1),
    ];
    if junk {
        trace.insert(
            0,
            (
                "Authentication-Results".into(),
                "spf=softfail (sender IP is 192.0.2.10) smtp.mailfrom=contoso.example; dkim=none \
                 (message not signed) header.d=none;dmarc=fail action=quarantine \
                 header.from=contoso.example;compauth=fail reason=001"
                    .into(),
            ),
        );
    }
    trace.extend(headers);
    let mut s = lock(state);
    s.next_id += 1;
    Stored {
        id: format!("AAMkAGI2TG93AAA=/{}", s.next_id),
        folder: if junk { "junkemail" } else { "inbox" }.into(),
        internet_message_id: message_id,
        received: now,
        from: mail.from.clone(),
        headers: trace,
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

fn json(status: u16, body: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn graph_error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    json(
        status,
        serde_json::json!({"error": {"code": code, "message": message}}),
    )
}

fn handle(
    request: Request<Incoming>,
    state: &Mutex<GraphState>,
    tokens: &BearerTokens,
) -> Response<Full<Bytes>> {
    let method = request.method().to_string();
    let path = percent_decode(request.uri().path());
    let query = request.uri().query().unwrap_or_default().to_string();
    lock(state)
        .requests
        .push((method.clone(), format!("{path}?{}", percent_decode(&query))));
    let bearer = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if tokens.user_of(bearer).is_none() {
        return graph_error(
            401,
            "InvalidAuthenticationToken",
            "Access token validation failure.",
        );
    }
    if let Some((status, code)) = lock(state).refuse {
        return graph_error(
            status,
            code,
            "Access is denied. Check credentials and try again.",
        );
    }
    let parts: Vec<&str> = path.trim_start_matches("/v1.0/").split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["users", user, "mailFolders", folder, "messages"]) => {
            if !user.eq_ignore_ascii_case(USER) {
                return graph_error(404, "ErrorInvalidUser", "The requested user is invalid.");
            }
            let folder = folder.to_ascii_lowercase();
            if !["inbox", "junkemail"].contains(&folder.as_str()) {
                return graph_error(
                    404,
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                );
            }
            if let Some(n) = lock(state).oversized {
                return json(
                    200,
                    serde_json::json!({"value": [], "padding": "x".repeat(n)}),
                );
            }
            let params: BTreeMap<String, String> = query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (percent_decode(k), percent_decode(v)))
                .collect();
            let filter = params.get("$filter").cloned().unwrap_or_default();
            let top: usize = params
                .get("$top")
                .and_then(|t| t.parse().ok())
                .unwrap_or(10);
            let wanted: Vec<String> = filter
                .split(" or ")
                .filter_map(|c| c.strip_prefix("internetMessageId eq '"))
                .filter_map(|c| c.strip_suffix('\''))
                .map(|c| c.replace("''", "'"))
                .collect();
            let before = filter
                .strip_prefix("receivedDateTime lt ")
                .and_then(|t| {
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .map(|t| t.unix_timestamp());
            let s = lock(state);
            let value: Vec<serde_json::Value> = s
                .messages
                .iter()
                .filter(|m| m.folder == folder)
                .filter(|m| {
                    wanted.contains(&m.internet_message_id)
                        || before.is_some_and(|b| m.received < b)
                })
                .take(top)
                .map(|m| {
                    serde_json::json!({
                        "id": m.id,
                        "internetMessageId": m.internet_message_id,
                        "receivedDateTime": rfc3339(m.received),
                        "from": {"emailAddress": {"address": m.from}},
                        "internetMessageHeaders": m.headers.iter()
                            .map(|(n, v)| serde_json::json!({"name": n, "value": v}))
                            .collect::<Vec<_>>(),
                    })
                })
                .collect();
            json(200, serde_json::json!({"value": value}))
        }
        ("DELETE", ["users", user, "messages", id @ ..]) if user.eq_ignore_ascii_case(USER) => {
            let id = id.join("/");
            let mut s = lock(state);
            let before = s.messages.len();
            s.messages.retain(|m| m.id != id);
            if s.messages.len() < before {
                Response::builder()
                    .status(204)
                    .body(Full::new(Bytes::new()))
                    .unwrap()
            } else {
                graph_error(
                    404,
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                )
            }
        }
        _ => graph_error(400, "BadRequest", "Unsupported request."),
    }
}

/// The demo SMTP server (plain, no AUTH), the token endpoint and the fake Graph.
struct Fixture {
    smtp: Arc<DemoServer>,
    tokens: TokenEndpoint,
    graph: FakeGraph,
    _dir: tempfile::TempDir,
    ca_file: std::path::PathBuf,
}

async fn fixture() -> Fixture {
    let registry = BearerTokens::new();
    let tokens = TokenEndpoint::start(TokenEndpointConfig {
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(CLIENT_SECRET),
        scope: Some(GRAPH_SCOPE.into()),
        user: USER.into(),
        tokens: registry.clone(),
        ..TokenEndpointConfig::default()
    })
    .await
    .unwrap();
    let smtp = Arc::new(
        DemoServer::start(ServerConfig {
            tls: DemoTls::None,
            ..ServerConfig::default()
        })
        .await
        .unwrap(),
    );
    let graph = FakeGraph::start(registry, smtp.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("root.pem");
    std::fs::write(&ca_file, DemoPki::localhost().root_pem()).unwrap();
    Fixture {
        smtp,
        tokens,
        graph,
        _dir: dir,
        ca_file,
    }
}

fn module(f: &Fixture, to: &str, mailboxes: &[&str]) -> Module {
    let tls_config = TlsSettings {
        trust: vec![],
        ca_files: vec![f.ca_file.clone()],
        ..TlsSettings::default()
    };
    Module {
        tls: TlsMode::None,
        timeout: Duration::from_secs(5),
        message: Some(MessageSettings {
            from: Mailbox::new(SENDER).unwrap(),
            to: vec![Mailbox::new(to).unwrap()],
            subject: "MFA delivery probe {token}".into(),
            body: "Your authentication token code is {token}.".into(),
        }),
        delivery: Some(DeliverySettings {
            access: MailboxAccess::Graph(GraphAccess {
                oauth2: OAuth2Settings {
                    token_url: f.tokens.url(),
                    client_id: CLIENT_ID.into(),
                    client_secret: Secret::new(CLIENT_SECRET),
                    scope: GRAPH_SCOPE.into(),
                },
                user: USER.into(),
                endpoint: f.graph.endpoint(),
                tls_config,
            }),
            mailboxes: mailboxes.iter().map(|m| m.to_string()).collect(),
            timeout: Duration::from_secs(5),
            cleanup: true,
            sweep_older_than: Duration::from_secs(3600),
            lost_after: Duration::from_secs(3600),
            junk_is_failure: false,
        }),
        ..Module::default()
    }
}

async fn run(f: &Fixture, prepared: &PreparedModule, pending: &[String]) -> ProbeOutcome {
    let target = parse_target(&f.smtp.addr().to_string(), 25).unwrap();
    probe::run_awaiting(
        prepared,
        &target,
        Budget::new(prepared.module.timeout),
        pending,
    )
    .await
}

fn assert_nothing_secret(f: &Fixture, o: &ProbeOutcome) {
    let token = f.tokens.last_token().unwrap();
    for out in [
        report::text::render(o),
        report::json::to_json(o),
        report::metrics::render(o),
        format!("{o:?}"),
    ] {
        assert!(
            !out.contains(CLIENT_SECRET),
            "client secret printed:\n{out}"
        );
        assert!(!out.contains(token.expose()), "token printed:\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_finds_reads_and_deletes_the_token_mail() {
    let f = fixture().await;
    let prepared = PreparedModule::new("graph", module(&f, USER, &["inbox", "junkemail"])).unwrap();
    let o = run(&f, &prepared, &[]).await;
    let text = report::text::render(&o);
    assert!(o.success(), "{text}");
    eprintln!("{text}");
    let d = o.delivery.as_ref().unwrap();
    assert_eq!(d.mailbox.as_deref(), Some("inbox"));
    assert!(!d.junk && d.cleaned_up && d.auth.is_empty());
    // The two Exchange hops of the fake mailbox, oldest first.
    let by: Vec<&str> = d
        .hops
        .iter()
        .filter_map(|h| h.received.by.as_deref())
        .collect();
    assert_eq!(
        by,
        [
            "exhub01.eurprd02.prod.outlook.com",
            "exmbx01.eurprd02.prod.outlook.com"
        ]
    );
    assert_eq!(d.hops[1].seconds, Some(1.0));
    assert_eq!(f.graph.count(), 0, "the token mail was deleted");
    let id = o.probe_id.clone().unwrap();
    let requests = f.graph.requests();
    let searched = format!("internetMessageId eq '<{id}@contoso.example>'");
    assert!(
        requests.iter().any(|(m, p)| m == "GET"
            && p.starts_with(&format!("/v1.0/users/{USER}/mailFolders/inbox/messages?"))
            && p.contains(&searched)
            && p.contains("$select=id,internetMessageId,receivedDateTime,internetMessageHeaders")),
        "{requests:#?}"
    );
    assert!(requests.iter().any(|(m, p)| m == "DELETE"
        && p.starts_with(&format!("/v1.0/users/{USER}/messages/AAMkAGI2TG93AAA=/"))));
    assert_eq!(f.tokens.requests(), 1);
    assert_nothing_secret(&f, &o);
    let metrics = report::metrics::render(&o);
    assert!(metrics.contains("probe_delivery_success 1"), "{metrics}");
    assert!(metrics.contains(r#"probe_delivery_mailbox_info{mailbox="inbox"} 1"#));

    // Again, with the cached token; then revoked: Graph says 401 and the check fetches a
    // fresh one, once.
    let o = run(&f, &prepared, &[]).await;
    assert!(o.success(), "{}", report::text::render(&o));
    assert_eq!(f.tokens.requests(), 1);
    assert!(f.tokens.tokens().revoke(&f.tokens.last_token().unwrap()));
    let o = run(&f, &prepared, &[]).await;
    assert!(o.success(), "{}", report::text::render(&o));
    assert_eq!(f.tokens.requests(), 2);
    assert_nothing_secret(&f, &o);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_reports_junk_with_its_verdicts() {
    let f = fixture().await;
    let prepared = PreparedModule::new(
        "graph-junk",
        module(&f, "junk@contoso.example", &["inbox", "junkemail"]),
    )
    .unwrap();
    let o = run(&f, &prepared, &[]).await;
    assert!(o.success(), "{}", report::text::render(&o));
    let d = o.delivery.as_ref().unwrap();
    assert_eq!(d.mailbox.as_deref(), Some("junkemail"));
    assert!(d.junk && d.cleaned_up);
    let verdicts: Vec<(&str, &str)> = d.auth.iter().map(|v| (v.method, v.result)).collect();
    assert_eq!(
        verdicts,
        [("spf", "softfail"), ("dkim", "none"), ("dmarc", "fail")]
    );
    let metrics = report::metrics::render(&o);
    for sample in [
        "probe_delivery_junk 1",
        r#"probe_delivery_auth_result{method="dmarc",result="fail"} 1"#,
    ] {
        assert!(metrics.contains(sample), "no {sample} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_refusals_are_graph_errors_with_graphs_words() {
    let f = fixture().await;
    let prepared = PreparedModule::new("graph", module(&f, USER, &["inbox"])).unwrap();
    lock(&f.graph.state).refuse = Some((403, "ErrorAccessDenied"));
    let began = Instant::now();
    let o = run(&f, &prepared, &[]).await;
    let failure = o.failure.as_ref().expect("a failure");
    assert_eq!(
        (failure.step, failure.reason),
        (StepName::Delivery, Reason::GraphError)
    );
    assert!(
        failure
            .detail
            .contains(r#"Graph search in "inbox": HTTP 403: ErrorAccessDenied (Access is denied."#),
        "{}",
        failure.detail
    );
    assert!(began.elapsed() < Duration::from_secs(3), "refused at once");
    assert_nothing_secret(&f, &o);

    // A folder that does not exist.
    lock(&f.graph.state).refuse = None;
    let prepared = PreparedModule::new("graph", module(&f, USER, &["Quarantine"])).unwrap();
    let o = run(&f, &prepared, &[]).await;
    let failure = o.failure.as_ref().expect("a failure");
    assert_eq!(failure.reason, Reason::GraphError);
    assert!(
        failure.detail.contains("HTTP 404: ErrorItemNotFound"),
        "{}",
        failure.detail
    );

    // An answer longer than the check reads.
    lock(&f.graph.state).oversized = Some(2 * 1024 * 1024);
    let prepared = PreparedModule::new("graph", module(&f, USER, &["inbox"])).unwrap();
    let o = run(&f, &prepared, &[]).await;
    let failure = o.failure.as_ref().expect("a failure");
    assert_eq!(failure.reason, Reason::GraphError);
    assert!(
        failure.detail.contains("longer than 512 KiB"),
        "{}",
        failure.detail
    );
}

/// A held mail times out (delivery_timeout), then is released and found late by the next
/// probe, which deletes it; the sweep deletes only our stale probe mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_finds_late_mail_and_sweeps_only_ours() {
    let f = fixture().await;
    let mut m = module(&f, USER, &["inbox"]);
    m.delivery.as_mut().unwrap().timeout = Duration::from_millis(1500);
    let prepared = PreparedModule::new("graph", m).unwrap();
    lock(&f.graph.state).hold = true;
    let o = run(&f, &prepared, &[]).await;
    assert_eq!(
        o.failure.as_ref().map(|x| x.reason),
        Some(Reason::DeliveryTimeout),
        "{}",
        report::text::render(&o)
    );
    let held = o.probe_id.clone().unwrap();
    lock(&f.graph.state).hold = false;
    f.graph.release();
    let o = run(&f, &prepared, std::slice::from_ref(&held)).await;
    assert!(o.success(), "{}", report::text::render(&o));
    let d = o.delivery.as_ref().unwrap();
    assert_eq!(d.late.len(), 1, "{:?}", d.late);
    assert_eq!(d.late[0].probe_id, held);
    assert!(d.late[0].cleaned_up && d.late[0].arrived_at.is_some());
    assert!(d.pending_searched_at.is_some());
    assert_eq!(f.graph.count(), 0);

    // The sweep: our own old probe mail goes, another sender's and a pending one stay.
    let old = unix_now() - 3 * 3600;
    let plant = |id: &str, from: &str, probe_id: &str| Stored {
        id: id.into(),
        folder: "inbox".into(),
        internet_message_id: format!("<{probe_id}@contoso.example>"),
        received: old,
        from: from.into(),
        headers: vec![("X-Smtp-Prober-Id".into(), probe_id.into())],
    };
    {
        let mut s = lock(&f.graph.state);
        s.messages
            .push(plant("ours", SENDER, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
        s.messages.push(plant(
            "foreign",
            "other@contoso.example",
            "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        ));
        s.messages
            .push(plant("pending", SENDER, "cccccccccccccccccccccccccccccccc"));
    }
    let settings = prepared.module.delivery.as_ref().unwrap();
    let deleted = delivery::sweep(
        settings,
        prepared.mailbox.as_ref().unwrap(),
        &Mailbox::new(SENDER).unwrap(),
        Duration::from_secs(3600),
        &["cccccccccccccccccccccccccccccccc".to_string()],
        Instant::now() + Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(deleted, 1);
    let left: Vec<String> = lock(&f.graph.state)
        .messages
        .iter()
        .map(|m| m.id.clone())
        .collect();
    assert_eq!(left, ["foreign", "pending"]);
}
