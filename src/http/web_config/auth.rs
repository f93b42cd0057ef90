//! Basic authentication (RFC 7617) against bcrypt hashes, the request rate limit per client
//! (`429`, RFC 6585) and the extra response headers: the middleware that `--web.config.file` puts in front
//! of every endpoint.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The `WWW-Authenticate` challenge of a 401 (RFC 7617 §2).
const CHALLENGE: &str = "Basic realm=\"smtp-prober\"";

/// At most this many successful credential checks are remembered.
const MAX_VERIFIED: usize = 1024;

/// bcrypt reads at most this many bytes of a password; passwords this long or longer are
/// refused.
pub(crate) const BCRYPT_MAX_PASSWORD: usize = 72;

/// A `Basic` credential longer than this (base64) is refused unread.
pub(super) const MAX_CREDENTIAL_BYTES: usize = 4096;

/// What the middleware enforces.
#[derive(Clone)]
pub(super) struct Gate {
    pub(super) auth: Option<Arc<BasicAuth>>,
    pub(super) headers: Arc<[(HeaderName, HeaderValue)]>,
    pub(super) rate_limit: Option<Arc<RateLimiter>>,
}

/// The middleware: the rate limit and credentials, then the handler; headers on every answer.
///
/// The rate limit keeps a bucket per client: a user whose credentials were verified before is
/// counted as that user (an unauthenticated flood from anywhere, even from the same address,
/// cannot use up Prometheus' requests); anyone else is counted by address, before any bcrypt
/// work is spent on the credentials they send.
pub(super) async fn guard(State(gate): State<Gate>, mut request: Request, next: Next) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| Client::Address(peer.ip()))
        .unwrap_or(Client::Unknown);
    let too_many = || plain(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n");
    let limited = |who: &Client| gate.rate_limit.as_ref().is_some_and(|l| !l.allow(who));
    let mut response = match &gate.auth {
        None if limited(&client) => too_many(),
        None => next.run(request).await,
        Some(auth) => {
            // Nothing after this point needs the credentials, so nothing can log them by
            // mistake.
            let credential = request.headers_mut().remove(header::AUTHORIZATION);
            let passed = match auth.remembered_user(credential.as_ref()).map(Client::User) {
                Some(user) if limited(&user) => Err(too_many()),
                Some(_) => Ok(()),
                None if limited(&client) => Err(too_many()),
                None if auth.check(credential.as_ref()).await => Ok(()),
                None => {
                    let mut r = plain(StatusCode::UNAUTHORIZED, "Unauthorized\n");
                    r.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static(CHALLENGE),
                    );
                    Err(r)
                }
            };
            match passed {
                Ok(()) => next.run(request).await,
                Err(refused) => refused,
            }
        }
    };
    let headers = response.headers_mut();
    for (name, value) in gate.headers.iter() {
        headers.insert(name.clone(), value.clone());
    }
    response
}

fn plain(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        Body::from(body),
    )
        .into_response()
}

/// Users and their bcrypt hashes, with the memory of credentials that passed.
pub(super) struct BasicAuth {
    pub(super) users: HashMap<String, String>,
    /// The hash an unknown user is checked against, so that the answer takes as long as for a
    /// known one.
    pub(super) decoy: String,
    /// SHA-256 of (user, hash, password) of every successful check, at most [`MAX_VERIFIED`].
    pub(super) verified: Mutex<HashSet<[u8; 32]>>,
    /// bcrypt runs at most one per CPU at a time.
    pub(super) bcrypt_slots: tokio::sync::Semaphore,
}

impl BasicAuth {
    /// `None` when there are no users (no authentication).
    pub(super) fn new(users: HashMap<String, String>) -> Option<BasicAuth> {
        let decoy = users.values().min()?.clone();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Some(BasicAuth {
            users,
            decoy,
            verified: Mutex::new(HashSet::new()),
            bcrypt_slots: tokio::sync::Semaphore::new(cpus),
        })
    }

    /// The user whose credentials the header holds, when they passed a check before (no bcrypt
    /// work: a digest lookup).
    pub(super) fn remembered_user(&self, header: Option<&HeaderValue>) -> Option<String> {
        let (user, password) = header.and_then(parse_basic)?;
        let hash = self.users.get(&user)?;
        let key = verified_key(&user, hash, &password);
        self.lock_verified().contains(&key).then_some(user)
    }

    /// Whether the `Authorization` header holds the credentials of a configured user.
    pub(super) async fn check(&self, header: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = header.and_then(parse_basic) else {
            return false;
        };
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.clone(), true),
            None => (self.decoy.clone(), false),
        };
        let key = verified_key(&user, &hash, &password);
        // The key is a SHA-256 digest: how long the lookup takes says nothing about the
        // password.
        if known && self.lock_verified().contains(&key) {
            return true;
        }
        let Ok(_slot) = self.bcrypt_slots.acquire().await else {
            return false;
        };
        let matches = tokio::task::spawn_blocking(move || {
            // bcrypt compares the digests in constant time. It reads only the first
            // BCRYPT_MAX_PASSWORD bytes of a password: one that long or longer is refused, never
            // checked by its beginning alone (any password sharing those bytes would pass).
            bcrypt::non_truncating_verify(&password, &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if !(known && matches) {
            // The name is the client's text: shown escaped and bounded.
            tracing::debug!(user = %crate::printable::shown(&user), "basic authentication failed");
            return false;
        }
        let mut verified = self.lock_verified();
        if verified.len() >= MAX_VERIFIED {
            // Only credentials that passed get here, so this takes many users or rotations:
            // forgetting one costs one bcrypt run later.
            if let Some(old) = verified.iter().next().copied() {
                verified.remove(&old);
            }
        }
        verified.insert(key);
        true
    }

    pub(super) fn lock_verified(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        // A panic while holding the lock cannot leave the set inconsistent.
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The user and password of a `Basic` `Authorization` header (RFC 7617 §2).
pub(super) fn parse_basic(value: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let text = value.to_str().ok()?.trim();
    let (scheme, credential) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let credential = credential.trim();
    if credential.len() > MAX_CREDENTIAL_BYTES {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credential)
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = std::str::from_utf8(&decoded[..colon]).ok()?.to_string();
    Some((user, decoded[colon + 1..].to_vec()))
}

/// The memory key of a successful check: lengths first, so no two inputs run together.
pub(super) fn verified_key(user: &str, hash: &str, password: &[u8]) -> [u8; 32] {
    let mut digest = Sha256::new();
    for part in [user.as_bytes(), hash.as_bytes(), password] {
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part);
    }
    digest.finalize().into()
}

/// Whom a request is counted against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Client {
    /// A user whose credentials passed.
    User(String),
    /// Anyone else, by address.
    Address(IpAddr),
    /// A request without a known address (not from the server's accept loop).
    Unknown,
}

/// At most this many clients have a bucket; buckets that refilled are forgotten first.
const MAX_BUCKETS: usize = 65_536;

/// A token bucket per client: `burst` requests at once, then one per `every`; the rest get 429.
pub(super) struct RateLimiter {
    pub(super) every: Duration,
    pub(super) burst: u32,
    buckets: Mutex<HashMap<Client, (f64, Instant)>>,
}

impl RateLimiter {
    pub(super) fn new(every: Duration, burst: u32) -> RateLimiter {
        RateLimiter {
            every,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token from `client`'s bucket, if one is left.
    pub(super) fn allow(&self, client: &Client) -> bool {
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(client) {
            // A full bucket is no different from none.
            let refill = self.every.saturating_mul(self.burst);
            buckets.retain(|_, (_, last)| now.duration_since(*last) < refill);
            if buckets.len() >= MAX_BUCKETS {
                return false;
            }
        }
        let full = f64::from(self.burst);
        let (tokens, last) = *buckets.entry(client.clone()).or_insert((full, now));
        let refill = now.duration_since(last).as_secs_f64() / self.every.as_secs_f64();
        let tokens = (tokens + refill).min(full);
        let (left, allowed) = if tokens >= 1.0 {
            (tokens - 1.0, true)
        } else {
            (tokens, false)
        };
        buckets.insert(client.clone(), (left, now));
        allowed
    }
}
