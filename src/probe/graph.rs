//! The delivery check through Microsoft Graph (`delivery.graph`), for Exchange Online mailboxes
//! that take no IMAP login: an application token from the client-credentials grant (scope
//! `https://graph.microsoft.com/.default`, application permission `Mail.ReadWrite`), then
//!
//! - `GET /users/{mailbox}/mailFolders/{folder}/messages?$filter=internetMessageId eq '<id@domain>'
//!   &$select=id,internetMessageId,receivedDateTime,internetMessageHeaders` per folder and round,
//!   which finds the mail and brings its `Received:` and `Authentication-Results:` fields at
//!   once (folders are Graph's well-known names, `inbox` and `junkemail`, or folder ids);
//! - the same with `or`-ed Message-IDs for the pending mails of earlier probes;
//! - `DELETE /users/{mailbox}/messages/{id}` of exactly the mails whose `X-Smtp-Prober-Id`
//!   field is one we look for.
//!
//! Every request runs within the check's deadline, over our own TLS client (the endpoint's chain
//! must verify), reusing one connection; a response body is read up to [`MAX_BODY`]; what Graph
//! says in an error is cut and escaped. A cached token Graph refuses (HTTP 401) is replaced
//! once. Anything that goes wrong on Graph's side is `graph_error`; the token request's failure
//! is `oauth_token_failed`; a mail that is not there in time is `delivery_timeout`, as over IMAP.

use std::time::{Duration, Instant, SystemTime};

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use tokio::net::TcpStream;
use tokio::time::timeout_at;

use super::delivery::{junk_name, Awaited, DeliveryReport, Late, LateMail, MailboxClient, Trace};
use super::module::{DeliverySettings, GraphAccess};
use super::token::PROBE_ID_HEADER;
use crate::headers::received;
use crate::printable::printable;
use crate::secret::Secret;
use crate::smtp::command::Mailbox;
use crate::smtp::transcript::Failure;
use crate::vocab::{Reason, StepName};

/// The most bytes of one Graph response read.
pub(crate) const MAX_BODY: usize = 512 * 1024;
/// Message-IDs `or`-ed into one query for pending mails (the URL stays short).
const IDS_PER_QUERY: usize = 15;
/// Probe mails a sweep looks at per folder (one page; the next sweep takes the next).
const SWEEP_PAGE: usize = 100;
/// Server text shown in a failure.
const SHOWN: usize = 200;

/// A message as Graph lists it (the fields we select).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Message {
    id: String,
    #[serde(default)]
    received_date_time: Option<String>,
    #[serde(default)]
    internet_message_headers: Vec<HeaderField>,
    #[serde(default)]
    from: Option<Recipient>,
}

#[derive(Debug, serde::Deserialize)]
struct HeaderField {
    name: String,
    value: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Recipient {
    email_address: Option<EmailAddress>,
}

#[derive(Debug, serde::Deserialize)]
struct EmailAddress {
    address: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct Page {
    #[serde(default)]
    value: Vec<Message>,
}

/// Graph's error body (`{"error":{"code":…,"message":…}}`).
#[derive(Debug, Default, serde::Deserialize)]
struct ErrorBody {
    error: Option<ErrorInfo>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct ErrorInfo {
    code: Option<String>,
    message: Option<String>,
}

impl Message {
    /// The value of its probe-id field, when it has one.
    fn probe_id(&self) -> Option<&str> {
        self.internet_message_headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(PROBE_ID_HEADER))
            .map(|h| h.value.trim())
    }

    /// When it arrived: its newest `Received:` stamp (the mailbox server's), else Graph's
    /// `receivedDateTime`.
    fn arrived_at(&self) -> Option<i64> {
        self.internet_message_headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("received"))
            .and_then(|h| received::parse(&printable(h.value.as_bytes(), 1024)).date)
            .or_else(|| {
                let t = self.received_date_time.as_deref()?;
                let t =
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .ok()?;
                Some(t.unix_timestamp())
            })
    }

    fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.internet_message_headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_str()))
    }
}

/// What went wrong with a Graph request.
enum Trouble {
    /// Graph answered with an error status.
    Refused(u16, String),
    /// No answer in time, no connection, or an answer we cannot use.
    Failed(String),
}

impl Trouble {
    fn into_failure(self, what: &str) -> Failure {
        let detail = match self {
            Trouble::Refused(status, words) => format!("Graph {what}: HTTP {status}{words}"),
            Trouble::Failed(words) => format!("Graph {what}: {words}"),
        };
        Failure::new(StepName::Delivery, Reason::GraphError, detail)
    }
}

/// A Graph session of one check: the endpoint, the token and one reused connection.
pub(crate) struct Check<'a> {
    access: &'a GraphAccess,
    client: &'a MailboxClient,
    deadline: Instant,
    token: Option<(Secret, bool)>,
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl<'a> Check<'a> {
    /// A session reading `access`'s mailbox until `deadline`.
    pub(crate) fn new(
        access: &'a GraphAccess,
        client: &'a MailboxClient,
        deadline: Instant,
    ) -> Self {
        Check {
            access,
            client,
            deadline,
            token: None,
            connection: None,
        }
    }

    /// Waits for the awaited mail in every folder, with backoff, looking for the pending ones
    /// too; reads the found mail's trace, whether its folder is Junk, and deletes it.
    pub(crate) async fn run(
        mut self,
        settings: &DeliverySettings,
        awaited: &Awaited<'_>,
        late: &mut Late,
        report: &mut DeliveryReport,
    ) -> Result<(), Failure> {
        let mut pause = Duration::from_millis(100);
        let ours = [awaited.probe_id.to_string()];
        loop {
            report.polls += 1;
            let mut found = None;
            for folder in &settings.mailboxes {
                let listed = self
                    .find(folder, &ours, awaited.domain)
                    .await
                    .map_err(|t| t.into_failure(&format!("search in {folder:?}")))?;
                if let Some(m) = listed.into_iter().next() {
                    report.found(folder, awaited);
                    found = Some((folder, m));
                    break;
                }
            }
            self.look_for_late(settings, awaited, late, report).await?;
            if let Some((folder, m)) = found {
                report.read_trace(Trace::of_fields(m.fields()), awaited);
                report.junk = junk_name(folder);
                if settings.cleanup {
                    report.cleaned_up = self.delete(&m.id).await.is_ok();
                }
                return Ok(());
            }
            let now = Instant::now();
            if now + pause >= self.deadline {
                tokio::time::sleep_until(self.deadline.into()).await;
                return Ok(());
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 3 / 2).min(Duration::from_secs(5));
        }
    }

    /// One round's search for the pending mails in every folder; those found are recorded late
    /// and deleted at once (with cleanup).
    async fn look_for_late(
        &mut self,
        settings: &DeliverySettings,
        awaited: &Awaited<'_>,
        late: &mut Late,
        report: &mut DeliveryReport,
    ) -> Result<(), Failure> {
        let mut complete = true;
        for folder in &settings.mailboxes {
            let wanted = late.wanted.clone();
            for ids in wanted.chunks(IDS_PER_QUERY) {
                let listed = match self.find(folder, ids, awaited.domain).await {
                    Ok(listed) => listed,
                    // Not this round: they stay pending, the next probe looks again.
                    Err(_) => {
                        complete = false;
                        continue;
                    }
                };
                for m in listed {
                    let Some(id) = m.probe_id().map(str::to_ascii_lowercase) else {
                        continue;
                    };
                    let cleaned_up = settings.cleanup && self.delete(&m.id).await.is_ok();
                    late.record(LateMail {
                        probe_id: id,
                        mailbox: folder.clone(),
                        arrived_at: m.arrived_at(),
                        cleaned_up,
                    });
                }
            }
        }
        if complete {
            report.pending_searched_at = Some(SystemTime::now());
        }
        Ok(())
    }

    /// The messages in `folder` with the Message-ID of one of `ids` whose probe-id field is
    /// that id (a Message-ID alone is not proof enough to delete a mail).
    async fn find(
        &mut self,
        folder: &str,
        ids: &[String],
        domain: &str,
    ) -> Result<Vec<Message>, Trouble> {
        let ids: Vec<&String> = ids.iter().filter(|id| is_probe_id(id)).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let filter = ids
            .iter()
            .map(|id| {
                format!(
                    "internetMessageId eq '{}'",
                    odata_string(&format!("<{id}@{domain}>"))
                )
            })
            .collect::<Vec<_>>()
            .join(" or ");
        let path = format!(
            "/users/{}/mailFolders/{}/messages?$filter={}&$select={}&$top={}",
            encode(&self.access.user),
            encode(folder),
            encode(&filter),
            encode("id,internetMessageId,receivedDateTime,internetMessageHeaders"),
            ids.len() * 2
        );
        let page: Page = self.get(&path).await?;
        Ok(page
            .value
            .into_iter()
            .filter(|m| {
                m.probe_id()
                    .is_some_and(|p| ids.iter().any(|id| id.eq_ignore_ascii_case(p)))
            })
            .collect())
    }

    /// Deletes one message by its Graph id.
    async fn delete(&mut self, id: &str) -> Result<(), Trouble> {
        let path = format!(
            "/users/{}/messages/{}",
            encode(&self.access.user),
            encode(id)
        );
        self.request(hyper::Method::DELETE, &path).await.map(|_| ())
    }

    async fn get<T: serde::de::DeserializeOwned>(&mut self, path: &str) -> Result<T, Trouble> {
        let body = self.request(hyper::Method::GET, path).await?;
        serde_json::from_slice(&body).map_err(|e| {
            Trouble::Failed(format!(
                "the answer is not the JSON expected ({})",
                printable(e.to_string().as_bytes(), SHOWN)
            ))
        })
    }

    /// One request with the bearer token; a refused cached token is replaced once.
    async fn request(&mut self, method: hyper::Method, path: &str) -> Result<Bytes, Trouble> {
        let mut retried = false;
        loop {
            let token = self.token().await?;
            let (status, body) = self.send(method.clone(), path, &token).await?;
            match status {
                200..=299 => return Ok(body),
                401 if !retried && self.token.as_ref().is_some_and(|(_, cached)| *cached) => {
                    retried = true;
                    if let Some(source) = &self.client.token_source {
                        source.invalidate_rejected(&token).await;
                    }
                    self.token = None;
                }
                _ => return Err(Trouble::Refused(status, error_words(&body))),
            }
        }
    }

    /// The bearer token: this check's, the cache's, or a fresh one.
    async fn token(&mut self) -> Result<Secret, Trouble> {
        if let Some((token, _)) = &self.token {
            return Ok(token.clone());
        }
        let Some(source) = &self.client.token_source else {
            return Err(Trouble::Failed(
                "no token source: the client was not built with MailboxClient::new".into(),
            ));
        };
        let (token, fetch) = source.token(self.deadline).await;
        match token {
            Some(t) => {
                self.token = Some((t.clone(), fetch.is_none()));
                Ok(t)
            }
            None => {
                let why = fetch
                    .and_then(|f| f.failure)
                    .map(|f| f.detail)
                    .unwrap_or_else(|| "no token".into());
                Err(Trouble::Failed(format!("token request: {why}")))
            }
        }
    }

    async fn send(
        &mut self,
        method: hyper::Method,
        path: &str,
        token: &Secret,
    ) -> Result<(u16, Bytes), Trouble> {
        let url: hyper::Uri = format!("{}{path}", self.access.endpoint)
            .parse()
            .map_err(|e| Trouble::Failed(format!("URL: {e}")))?;
        let authority = url
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        let request = hyper::Request::builder()
            .method(method)
            .uri(url.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
            .header(hyper::header::HOST, authority)
            .header(hyper::header::ACCEPT, "application/json")
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", token.expose()),
            )
            .body(Full::new(Bytes::new()))
            .map_err(|e| Trouble::Failed(format!("building the request: {e}")))?;
        let deadline = self.deadline;
        let work = async {
            let sender = self.connection(&url).await?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| Trouble::Failed(format!("request: {e}")))?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|_| {
                    Trouble::Failed(format!(
                        "the answer (HTTP {status}) is longer than {} KiB, or broken",
                        MAX_BODY / 1024
                    ))
                })?
                .to_bytes();
            Ok((status, body))
        };
        let result = timeout_at(deadline.into(), work)
            .await
            .unwrap_or_else(|_| Err(Trouble::Failed("no answer before the deadline".into())));
        if result.is_err() {
            // A connection that failed mid-request is not reused.
            self.connection = None;
        }
        result
    }

    /// The open connection, or a new one (TLS with a verified chain; plain HTTP only to a
    /// loopback endpoint, as for token endpoints).
    async fn connection(
        &mut self,
        url: &hyper::Uri,
    ) -> Result<&mut SendRequest<Full<Bytes>>, Trouble> {
        let reusable = self
            .connection
            .as_mut()
            .is_some_and(|c| !c.is_closed() && c.is_ready());
        if !reusable {
            self.connection = Some(self.connect(url).await?);
        }
        self.connection
            .as_mut()
            .ok_or_else(|| Trouble::Failed("no connection".into()))
    }

    async fn connect(&self, url: &hyper::Uri) -> Result<SendRequest<Full<Bytes>>, Trouble> {
        let host = super::oauth::url_host(url);
        let tls = url.scheme_str() == Some("https");
        let port = url.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| Trouble::Failed(format!("connecting to {host}:{port}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        if !tls {
            return handshake(tcp).await;
        }
        let client = &self.client.tls;
        let (stream, report) = client
            .handshake(tcp, &host, SystemTime::now())
            .await
            .map_err(|f| Trouble::Failed(format!("TLS: {}", f.detail)))?;
        // The bearer token goes to a verified endpoint only.
        if let Some(e) = &report.chain.error {
            return Err(Trouble::Failed(format!(
                "certificate of {host}: {} ({})",
                e.reason, e.detail
            )));
        }
        handshake(stream).await
    }
}

async fn handshake<S>(io: S) -> Result<SendRequest<Full<Bytes>>, Trouble>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(|e| Trouble::Failed(format!("HTTP: {e}")))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// `: ErrorAccessDenied (Access is denied.)` from Graph's error body, cut and escaped.
fn error_words(body: &[u8]) -> String {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let Some(info) = parsed.error else {
        return String::new();
    };
    let mut out = String::new();
    if let Some(code) = info.code {
        out.push_str(&format!(": {}", printable(code.as_bytes(), 80)));
    }
    if let Some(message) = info.message {
        out.push_str(&format!(" ({})", printable(message.as_bytes(), SHOWN)));
    }
    out
}

/// 32 hexadecimal digits, as our probe ids are: nothing else goes into a filter.
fn is_probe_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An OData string literal's content: single quotes doubled.
fn odata_string(text: &str) -> String {
    text.replace('\'', "''")
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Deletes our own probe mails older than `older_than` from every folder: mails with a
/// 32-hex-digit probe-id field not in `spare` and `from` as sender. Looks at one page
/// ([`SWEEP_PAGE`]) per folder. Returns how many.
pub(crate) async fn sweep(
    settings: &DeliverySettings,
    access: &GraphAccess,
    client: &MailboxClient,
    from: &Mailbox,
    older_than: Duration,
    spare: &[String],
    deadline: Instant,
) -> Result<usize, Failure> {
    let mut graph = Check::new(access, client, deadline);
    let cutoff = SystemTime::now()
        .checked_sub(older_than)
        .map(crate::clock::unix_seconds)
        .unwrap_or(0);
    let cutoff = crate::clock::rfc3339(cutoff);
    let from = from.as_str();
    let mut deleted = 0;
    for folder in &settings.mailboxes {
        let path = format!(
            "/users/{}/mailFolders/{}/messages?$filter={}&$select={}&$top={SWEEP_PAGE}",
            encode(&access.user),
            encode(folder),
            encode(&format!("receivedDateTime lt {cutoff}")),
            encode("id,from,internetMessageHeaders"),
        );
        let page: Page = graph
            .get(&path)
            .await
            .map_err(|t| t.into_failure(&format!("sweep of {folder:?}")))?;
        for m in page.value {
            let ours = m.probe_id().is_some_and(|id| {
                is_probe_id(id) && !spare.iter().any(|s| s.eq_ignore_ascii_case(id))
            });
            let sender = m
                .from
                .as_ref()
                .and_then(|f| f.email_address.as_ref())
                .and_then(|e| e.address.as_deref())
                .is_some_and(|a| a.eq_ignore_ascii_case(from));
            if ours && sender {
                graph
                    .delete(&m.id)
                    .await
                    .map_err(|t| t.into_failure("delete"))?;
                deleted += 1;
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_filters_are_encoded() {
        assert_eq!(encode("a b/c@d'e"), "a%20b%2Fc%40d%27e");
        assert_eq!(encode("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(odata_string("<o'brien@x>"), "<o''brien@x>");
        assert!(is_probe_id("0123456789abcdef0123456789ABCDEF"));
        assert!(!is_probe_id("0123456789abcdef0123456789abcde' or 1 eq 1"));
    }

    #[test]
    fn error_words_are_short_and_plain() {
        let body = format!(
            r#"{{"error":{{"code":"ErrorAccessDenied","message":"Access is denied.\u001b[2J{}"}}}}"#,
            "x".repeat(5000)
        );
        let words = error_words(body.as_bytes());
        assert!(
            words.starts_with(": ErrorAccessDenied (Access is denied.\\u{1b}[2J"),
            "{words}"
        );
        assert!(
            words.len() < 400 && !words.chars().any(char::is_control),
            "{words}"
        );
        assert_eq!(error_words(b"not json"), "");
    }

    #[test]
    fn arrival_is_the_newest_received_stamp_else_graphs_date() {
        let m: Message = serde_json::from_str(
            r#"{"id":"A","receivedDateTime":"2026-11-30T13:00:09Z","internetMessageHeaders":[
                {"name":"Received","value":"from a by b; Mon, 30 Nov 2026 13:00:05 +0000"},
                {"name":"Received","value":"from c by a; Mon, 30 Nov 2026 13:00:01 +0000"},
                {"name":"X-Smtp-Prober-Id","value":" 0123456789abcdef0123456789abcdef "}]}"#,
        )
        .unwrap();
        assert_eq!(m.arrived_at(), Some(1_796_043_605));
        assert_eq!(m.probe_id(), Some("0123456789abcdef0123456789abcdef"));
        let bare: Message =
            serde_json::from_str(r#"{"id":"B","receivedDateTime":"2026-11-30T13:00:09Z"}"#)
                .unwrap();
        assert_eq!(bare.arrived_at(), Some(1_796_043_609));
        assert_eq!(bare.probe_id(), None);
    }
}
