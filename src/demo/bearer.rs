//! The bearer tokens the demo server accepts for XOAUTH2 and OAUTHBEARER, shared with the
//! [`TokenEndpoint`](super::TokenEndpoint) that issues them.

use crate::secret::Secret;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The bearer tokens the server accepts for XOAUTH2 and OAUTHBEARER, each valid for one user
/// and perhaps only for a while. A handle: clones share one registry, so that a
/// [`TokenEndpoint`](super::TokenEndpoint) issues tokens the server then accepts, and a test can
/// revoke a token the prober still has cached.
#[derive(Clone, Default)]
pub struct BearerTokens {
    inner: Arc<Mutex<HashMap<String, BearerGrant>>>,
}

/// Who a token is for and until when.
#[derive(Clone)]
struct BearerGrant {
    user: String,
    expires: Option<Instant>,
}

impl BearerTokens {
    /// An empty registry: every bearer token is refused.
    pub fn new() -> BearerTokens {
        BearerTokens::default()
    }

    /// Accepts `token` for `user` until revoked.
    pub fn insert(&self, user: impl Into<String>, token: &Secret) {
        self.grant(user.into(), token, None);
    }

    /// Accepts `token` for `user` for `lifetime` from now (what a token endpoint's `expires_in`
    /// promises), then refuses it.
    pub fn insert_expiring(&self, user: impl Into<String>, token: &Secret, lifetime: Duration) {
        self.grant(user.into(), token, Instant::now().checked_add(lifetime));
    }

    fn grant(&self, user: String, token: &Secret, expires: Option<Instant>) {
        let mut map = self.lock();
        // Expired grants go when new ones come, so a long demo run does not grow the map.
        let now = Instant::now();
        map.retain(|_, g| g.expires.is_none_or(|e| e > now));
        map.insert(token.expose().to_string(), BearerGrant { user, expires });
    }

    /// Stops accepting `token`; whether it was known.
    pub fn revoke(&self, token: &Secret) -> bool {
        self.lock().remove(token.expose()).is_some()
    }

    /// Stops accepting every token (a key rollover at the identity provider).
    pub fn revoke_all(&self) {
        self.lock().clear();
    }

    /// How many tokens are known (expired ones included until the next insert).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no token is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The user `token` is valid for now, if it is.
    pub fn user_of(&self, token: &str) -> Option<String> {
        let map = self.lock();
        let grant = map.get(token)?;
        grant
            .expires
            .is_none_or(|e| Instant::now() < e)
            .then(|| grant.user.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, BearerGrant>> {
        // A panic elsewhere while holding the lock leaves the map usable still.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for BearerTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The tokens are secrets: only their number shows.
        f.debug_struct("BearerTokens")
            .field("len", &self.len())
            .finish()
    }
}
