//! Talking to GitHub through octocrab's raw request methods (`_get_with_headers`,
//! `build_request` + `execute`): several endpoints plumb uses answer `204 No
//! Content` or `304 Not Modified`, which octocrab's typed calls turn into
//! errors. This module owns auth (a token; or a GitHub App: JWT, installation
//! lookup, installation tokens minted, reused and renewed 5 minutes before
//! they expire or after a 401), retries with bounded exponential backoff,
//! the primary and secondary rate limits, `Link` pagination and the ETag
//! cache kept across runs in `ctx.cache_dir`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::header::{HeaderMap, HeaderValue, AUTHORIZATION, IF_NONE_MATCH};
use octocrab::Octocrab;
use plumb_model::{Ctx, ProviderError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connection::{AuthSpec, Connection};

/// Items per page: the documented maximum for every list plumb reads
/// (https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api).
pub const PER_PAGE: u32 = 100;
/// First backoff step for transient failures; doubled per attempt, capped.
const BACKOFF: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// Pages at most per list, so a server that always answers `rel="next"`
/// cannot keep a run busy forever (1,000 pages of 100 = 100,000 items).
const MAX_PAGES: usize = 1000;

/// One cached page: its ETag, body and the next page's URL.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedPage {
    etag: String,
    body: Value,
    next: Option<String>,
}

/// What one request cost, for logs and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    pub not_modified: u64,
    pub retries: u64,
}

/// An answer: status, headers, body text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// GitHub's `message` (and the `errors` of a 422), for error texts.
    pub fn message(&self) -> String {
        let v = self.json();
        let mut m = v["message"].as_str().unwrap_or(self.body.trim()).to_string();
        if let Some(errors) = v["errors"].as_array() {
            let details: Vec<String> = errors
                .iter()
                .map(|e| {
                    e["message"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| e.to_string())
                })
                .collect();
            if !details.is_empty() {
                m = format!("{m} ({})", details.join("; "));
            }
        }
        m
    }
}

fn header_u64(h: &HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Installation tokens are replaced when less than this is left.
/// GitHub's last an hour ("The installation access token will expire after
/// 1 hour", https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/generating-an-installation-access-token-for-a-github-app),
/// so a token serves about 55 minutes and a long run (rate-limit waits,
/// large orgs) never sends one that expires on the way.
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// An installation access token and when GitHub says it expires. Its
/// `Debug` never shows the token.
#[derive(Clone)]
struct InstallationToken {
    secret: String,
    expires_at: chrono::DateTime<chrono::Utc>,
}

/// What the provider knows about one org's App installation.
#[derive(Clone, Default)]
struct InstallationSlot {
    id: Option<u64>,
    token: Option<InstallationToken>,
}

/// The installations and tokens of a GitHub App target, by lower-cased
/// org, shared by the provider's runs so that `live` and `apply` (and the
/// runs of `plumb serve`) reuse a token until it nears its expiry.
#[derive(Clone, Default)]
pub struct TokenCache(Arc<tokio::sync::Mutex<HashMap<String, InstallationSlot>>>);

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCache(..)")
    }
}

/// How requests are authenticated.
enum Auth {
    /// octocrab adds the personal access token itself.
    Static,
    /// A GitHub App: JWTs for `/app/...` and `/orgs/{org}/installation`,
    /// installation tokens for everything else.
    App(AppAuth),
}

struct AppAuth {
    app_id: u64,
    key: octocrab::EncodingKey,
    key_file: PathBuf,
    installation_id: Option<u64>,
    org: String,
    tokens: TokenCache,
}

/// A GitHub client for one run of one target.
pub struct Api {
    crab: Octocrab,
    auth: Auth,
    base: String,
    retries: u32,
    request_timeout: Duration,
    /// Rate-limit waits must end before this (the run's budget).
    deadline: Instant,
    cache_file: PathBuf,
    cache: Mutex<HashMap<String, CachedPage>>,
    stats: Mutex<Stats>,
    /// Last seen `x-ratelimit-remaining` and `x-ratelimit-reset`.
    limit: Mutex<Option<(u64, u64)>>,
}

fn api_err(request: &str, status: Option<u16>, message: impl Into<String>) -> ProviderError {
    ProviderError::Api {
        request: request.to_string(),
        status,
        message: message.into(),
    }
}

impl Api {
    /// Builds the client; reads the token (or App key) now, so a missing
    /// variable or unreadable key fails before any request. Must run on a
    /// Tokio runtime. `tokens` is the provider's cache of App installation
    /// tokens, shared by every run of this target.
    pub async fn new(conn: &Connection, org: &str, ctx: &Ctx, tokens: &TokenCache) -> Result<Api, ProviderError> {
        let builder = Octocrab::builder()
            .base_uri(conn.api_url.as_str())
            .map_err(|e| ProviderError::Config(format!("api_url {:?}: {e}", conn.api_url)))?
            // plumb retries itself, so that rate-limit answers are waited
            // out as GitHub says and never retried in a tight loop.
            .add_retry_config(octocrab::service::middleware::retry::RetryConfig::None)
            .set_connect_timeout(Some(conn.request_timeout))
            .set_read_timeout(Some(conn.request_timeout))
            .set_write_timeout(Some(conn.request_timeout));
        let (crab, auth) = match &conn.auth {
            AuthSpec::Token { token_env } => {
                let token = ctx.secret("token_env", token_env)?;
                let crab = builder
                    .personal_token(token)
                    .build()
                    .map_err(|e| ProviderError::Config(format!("building the GitHub client: {e}")))?;
                (crab, Auth::Static)
            }
            AuthSpec::App {
                app_id,
                private_key_file,
                installation_id,
            } => {
                let pem = std::fs::read(private_key_file).map_err(|e| ProviderError::io(private_key_file, e))?;
                let key = octocrab::EncodingKey::from_rsa_pem(&pem).map_err(|e| {
                    ProviderError::Config(format!(
                        "private_key_file {}: not an RSA private key in PEM form ({e})",
                        private_key_file.display()
                    ))
                })?;
                // No credentials in octocrab itself: its App mode only sends
                // the installation token to api.github.com or relative URLs
                // (octocrab 0.54 `Octocrab::execute`), which would leave
                // GitHub Enterprise Server and paginated `Link` URLs
                // unauthenticated; and it renews tokens only 30 s before
                // they expire. plumb sets `Authorization` per request.
                let crab = builder
                    .build()
                    .map_err(|e| ProviderError::Config(format!("building the GitHub App client: {e}")))?;
                (
                    crab,
                    Auth::App(AppAuth {
                        app_id: *app_id,
                        key,
                        key_file: private_key_file.clone(),
                        installation_id: *installation_id,
                        org: org.to_lowercase(),
                        tokens: tokens.clone(),
                    }),
                )
            }
        };
        let cache_file = ctx.cache_dir.join(format!("github-etags-{}.json", org.to_lowercase()));
        let cache = std::fs::read(&cache_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Ok(Api {
            crab,
            auth,
            base: conn.api_url.clone(),
            retries: conn.retries,
            request_timeout: conn.request_timeout,
            deadline: Instant::now() + ctx.timeout,
            cache_file,
            cache: Mutex::new(cache),
            stats: Mutex::new(Stats::default()),
            limit: Mutex::new(None),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn stats(&self) -> Stats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }

    /// Writes the ETag cache (not secret: bodies of org lists, no tokens).
    pub fn save_cache(&self) {
        let Ok(cache) = self.cache.lock() else { return };
        if let Err(e) = std::fs::create_dir_all(self.cache_file.parent().unwrap_or(&self.cache_file))
            .and_then(|_| serde_json::to_vec(&*cache).map_err(std::io::Error::other))
            .and_then(|bytes| {
                let tmp = self.cache_file.with_extension("json.tmp");
                std::fs::write(&tmp, bytes)?;
                std::fs::rename(&tmp, &self.cache_file)
            })
        {
            tracing::warn!(file = %self.cache_file.display(), error = %e, "could not save the GitHub ETag cache");
        }
    }

    /// Seconds to wait before the next request when the primary limit is
    /// spent, or an error when the reset is beyond the run's budget.
    fn primary_wait(&self, request: &str, reset: u64) -> Result<Duration, ProviderError> {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let wait = Duration::from_secs(reset.saturating_sub(now) + 1);
        if Instant::now() + wait > self.deadline {
            let at = chrono::DateTime::from_timestamp(reset as i64, 0)
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| reset.to_string());
            return Err(api_err(
                request,
                Some(403),
                format!("rate limit exhausted; it resets at {at}, after this run's budget"),
            ));
        }
        Ok(wait)
    }

    /// Sends one request, retrying transient failures and waiting out rate
    /// limits. Returns any HTTP answer that is not one of those (the caller
    /// judges 404/422/…).
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        body: Option<&Value>,
        etag: Option<&str>,
    ) -> Result<Reply, ProviderError> {
        if !matches!(self.auth, Auth::App(_)) {
            return self.send_as(method, url, body, etag, None).await;
        }
        let token = self.installation_token(false).await?;
        let reply = self.send_as(method, url, body, etag, Some(&token)).await?;
        if reply.status != 401 {
            return Ok(reply);
        }
        // "Bad credentials" for a token we still thought valid: it expired
        // early (clock skew) or was revoked. Mint a new one and try once
        // more; a second 401 is the caller's to report.
        tracing::info!(request = %format!("{method} {url}"), "installation token refused; minting a new one");
        let token = self.installation_token(true).await?;
        self.send_as(method, url, body, etag, Some(&token)).await
    }

    /// An installation token for this org that has more than
    /// [`TOKEN_REFRESH_MARGIN`] left, minted (and the installation looked
    /// up) when needed; `renew` mints a new one regardless.
    async fn installation_token(&self, renew: bool) -> Result<String, ProviderError> {
        let Auth::App(app) = &self.auth else {
            return Err(ProviderError::Config("not a GitHub App target".into()));
        };
        let mut slots = app.tokens.0.lock().await;
        let slot = slots.entry(app.org.clone()).or_default();
        let margin = chrono::Duration::from_std(TOKEN_REFRESH_MARGIN).unwrap_or_default();
        if let Some(t) = slot.token.as_ref().filter(|_| !renew) {
            if t.expires_at - chrono::Utc::now() > margin {
                return Ok(t.secret.clone());
            }
            tracing::debug!(org = %app.org, expires_at = %t.expires_at, "installation token expires soon; renewing");
        }
        let jwt = octocrab::auth::create_jwt(app.app_id.into(), &app.key).map_err(|e| {
            ProviderError::Config(format!(
                "GitHub App {}: cannot sign a JWT with private_key_file {} ({e})",
                app.app_id,
                app.key_file.display()
            ))
        })?;
        let id = match app.installation_id.or(slot.id) {
            Some(id) => id,
            None => {
                // https://docs.github.com/en/rest/apps/apps#get-an-organization-installation-for-the-authenticated-app
                let url = self.url(&format!("/orgs/{}/installation", app.org));
                let reply = self.send_as("GET", &url, None, None, Some(&jwt)).await?;
                match reply.status {
                    200 => reply.json()["id"].as_u64().ok_or_else(|| {
                        api_err(&format!("GET {url}"), Some(200), "the answer has no installation id")
                    })?,
                    404 => {
                        return Err(api_err(
                            &format!("GET {url}"),
                            Some(404),
                            format!(
                                "GitHub App {} is not installed on org {} ({}); install it there or set connection.installation_id",
                                app.app_id,
                                app.org,
                                reply.message()
                            ),
                        ))
                    }
                    status => return Err(app_refused(app, &format!("GET {url}"), status, &reply)),
                }
            }
        };
        slot.id = Some(id);
        // https://docs.github.com/en/rest/apps/apps#create-an-installation-access-token-for-an-app
        let url = self.url(&format!("/app/installations/{id}/access_tokens"));
        let request = format!("POST {url}");
        let reply = self
            .send_as("POST", &url, Some(&Value::Object(Default::default())), None, Some(&jwt))
            .await?;
        if reply.status == 404 {
            return Err(api_err(
                &request,
                Some(404),
                format!(
                    "GitHub App {} has no installation {id} ({})",
                    app.app_id,
                    reply.message()
                ),
            ));
        }
        if reply.status != 201 && reply.status != 200 {
            return Err(app_refused(app, &request, reply.status, &reply));
        }
        let body = reply.json();
        let secret = body["token"].as_str().unwrap_or_default().to_string();
        let expires_at = body["expires_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc));
        let (false, Some(expires_at)) = (secret.is_empty(), expires_at) else {
            return Err(api_err(
                &request,
                Some(reply.status),
                "the answer lacks token or expires_at",
            ));
        };
        tracing::debug!(org = %app.org, installation = id, %expires_at, "minted a GitHub App installation token");
        slot.token = Some(InstallationToken {
            secret: secret.clone(),
            expires_at,
        });
        Ok(secret)
    }

    /// [`Api::send`] with an explicit bearer credential (a JWT or an
    /// installation token), or octocrab's own (`None`).
    async fn send_as(
        &self,
        method: &str,
        url: &str,
        body: Option<&Value>,
        etag: Option<&str>,
        bearer: Option<&str>,
    ) -> Result<Reply, ProviderError> {
        let request = format!("{method} {url}");
        let mut attempt = 0u32;
        loop {
            // The primary limit is spent: wait for its reset, never spin.
            let spent = self
                .limit
                .lock()
                .ok()
                .and_then(|l| *l)
                .filter(|(remaining, _)| *remaining == 0);
            if let Some((_, reset)) = spent {
                let wait = self.primary_wait(&request, reset)?;
                tracing::warn!(%request, wait_s = wait.as_secs(), "GitHub rate limit spent; waiting for its reset");
                tokio::time::sleep(wait).await;
                if let Ok(mut l) = self.limit.lock() {
                    *l = None;
                }
            }
            let sent = tokio::time::timeout(self.request_timeout, self.once(method, url, body, etag, bearer)).await;
            if let Ok(mut s) = self.stats.lock() {
                s.requests += 1;
                if attempt > 0 {
                    s.retries += 1;
                }
            }
            let outcome = match sent {
                Err(_) => Err(format!("no answer within {:?}", self.request_timeout)),
                Ok(Err(e)) => Err(octocrab_message(&e)),
                Ok(Ok(reply)) => Ok(reply),
            };
            let reply = match outcome {
                Err(message) => {
                    if attempt >= self.retries {
                        return Err(api_err(&request, None, message));
                    }
                    tracing::debug!(%request, %message, attempt, "transient failure; retrying");
                    self.backoff(attempt, None).await;
                    attempt += 1;
                    continue;
                }
                Ok(r) => r,
            };
            let remaining = header_u64(&reply.headers, "x-ratelimit-remaining");
            let reset = header_u64(&reply.headers, "x-ratelimit-reset");
            if let (Some(r), Some(t)) = (remaining, reset) {
                if let Ok(mut l) = self.limit.lock() {
                    *l = Some((r, t));
                }
            }
            let retry_after = header_u64(&reply.headers, "retry-after");
            let status = reply.status;
            // https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-rate-limit:
            // a 403 or 429 with `retry-after` is a secondary limit (wait that
            // long); with `x-ratelimit-remaining: 0` the primary one (wait
            // until `x-ratelimit-reset`).
            if status == 403 || status == 429 {
                if let Some(secs) = retry_after {
                    let wait = Duration::from_secs(secs);
                    if attempt >= self.retries || Instant::now() + wait > self.deadline {
                        return Err(api_err(
                            &request,
                            Some(status),
                            format!("secondary rate limit: {} (retry-after {secs}s)", reply.message()),
                        ));
                    }
                    tracing::warn!(%request, wait_s = secs, "GitHub secondary rate limit; waiting");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    continue;
                }
                if remaining == Some(0) {
                    if attempt >= self.retries {
                        return Err(api_err(&request, Some(status), reply.message()));
                    }
                    let wait = self.primary_wait(&request, reset.unwrap_or(0))?;
                    tracing::warn!(%request, wait_s = wait.as_secs(), "GitHub rate limit exceeded; waiting for reset");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    continue;
                }
            }
            if status >= 500 && attempt < self.retries {
                tracing::debug!(%request, status, attempt, "server error; retrying");
                self.backoff(attempt, retry_after).await;
                attempt += 1;
                continue;
            }
            return Ok(reply);
        }
    }

    async fn backoff(&self, attempt: u32, retry_after: Option<u64>) {
        let step = BACKOFF.saturating_mul(1 << attempt.min(10)).min(BACKOFF_CAP);
        let wait = retry_after
            .map(Duration::from_secs)
            .unwrap_or(step)
            .min(BACKOFF_CAP * 6);
        tokio::time::sleep(wait).await;
    }

    async fn once(
        &self,
        method: &str,
        url: &str,
        body: Option<&Value>,
        etag: Option<&str>,
        bearer: Option<&str>,
    ) -> Result<Reply, octocrab::Error> {
        let method = http::Method::from_bytes(method.as_bytes()).unwrap_or(http::Method::GET);
        let mut builder = http::Request::builder().method(method).uri(url);
        if let Some(tag) = etag.and_then(|t| HeaderValue::from_str(t).ok()) {
            builder = builder.header(IF_NONE_MATCH, tag);
        }
        if let Some(mut value) = bearer.and_then(|b| HeaderValue::from_str(&format!("Bearer {b}")).ok()) {
            // Kept out of hyper's and tracing's header dumps.
            value.set_sensitive(true);
            builder = builder.header(AUTHORIZATION, value);
        }
        let request = self.crab.build_request(builder, body)?;
        let response = self.crab.execute(request).await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = self.crab.body_to_string(response).await?;
        Ok(Reply { status, headers, body })
    }

    /// Reads every page of a list (`per_page=100`, following `Link: rel="next"`),
    /// with `If-None-Match` per page from the cache; a `304` page is taken
    /// from the cache and costs no rate-limit point on GitHub.
    pub async fn list(&self, path: &str) -> Result<Vec<Value>, ProviderError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut next = Some(self.url(&format!("{path}{sep}per_page={PER_PAGE}")));
        let mut items = Vec::new();
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(api_err(&format!("GET {url}"), None, "more than 1000 pages; giving up"));
            }
            let cached = self.cache.lock().ok().and_then(|c| c.get(&url).cloned());
            let reply = self
                .send("GET", &url, None, cached.as_ref().map(|c| c.etag.as_str()))
                .await?;
            let page = match (reply.status, cached) {
                (304, Some(c)) => {
                    if let Ok(mut s) = self.stats.lock() {
                        s.not_modified += 1;
                    }
                    c
                }
                (200, _) => {
                    let body: Value = serde_json::from_str(&reply.body)
                        .map_err(|e| api_err(&format!("GET {url}"), Some(200), format!("invalid JSON: {e}")))?;
                    let page = CachedPage {
                        etag: reply
                            .headers
                            .get("etag")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string(),
                        body,
                        next: next_link(&reply.headers),
                    };
                    if let Ok(mut c) = self.cache.lock() {
                        if page.etag.is_empty() {
                            c.remove(&url);
                        } else {
                            c.insert(url.clone(), page.clone());
                        }
                    }
                    page
                }
                (status, _) => return Err(api_err(&format!("GET {url}"), Some(status), reply.message())),
            };
            match page.body {
                Value::Array(a) => items.extend(a),
                other => {
                    return Err(api_err(
                        &format!("GET {url}"),
                        Some(200),
                        format!("expected a list, got {}", truncate(&other.to_string())),
                    ))
                }
            }
            next = page.next;
        }
        Ok(items)
    }

    /// One object (`GET`), conditional like [`Api::list`].
    pub async fn get(&self, path: &str) -> Result<Value, ProviderError> {
        let url = self.url(path);
        let cached = self.cache.lock().ok().and_then(|c| c.get(&url).cloned());
        let reply = self
            .send("GET", &url, None, cached.as_ref().map(|c| c.etag.as_str()))
            .await?;
        match (reply.status, cached) {
            (304, Some(c)) => {
                if let Ok(mut s) = self.stats.lock() {
                    s.not_modified += 1;
                }
                Ok(c.body)
            }
            (200, _) => {
                let body = reply.json();
                if let Some(etag) = reply.headers.get("etag").and_then(|v| v.to_str().ok()) {
                    if let Ok(mut c) = self.cache.lock() {
                        c.insert(
                            url,
                            CachedPage {
                                etag: etag.to_string(),
                                body: body.clone(),
                                next: None,
                            },
                        );
                    }
                }
                Ok(body)
            }
            (status, _) => Err(api_err(&format!("GET {url}"), Some(status), reply.message())),
        }
    }

    /// A write; any 2xx is success, anything else an error naming the
    /// request, the status and GitHub's message.
    pub async fn write(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, ProviderError> {
        let url = self.url(path);
        let reply = self.send(method, &url, body, None).await?;
        if (200..300).contains(&reply.status) {
            Ok(reply.json())
        } else {
            Err(api_err(&format!("{method} {url}"), Some(reply.status), reply.message()))
        }
    }
}

/// A JWT request GitHub refused: names the App, the request and GitHub's
/// message, and says where the key came from, never what it is.
fn app_refused(app: &AppAuth, request: &str, status: u16, reply: &Reply) -> ProviderError {
    let hint = if status == 401 {
        format!(
            " (the JWT was refused: check app_id and that private_key_file {} is this App's key, and the clock)",
            app.key_file.display()
        )
    } else {
        String::new()
    };
    api_err(
        request,
        Some(status),
        format!("GitHub App {}: {}{hint}", app.app_id, reply.message()),
    )
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

/// The `rel="next"` URL of a `Link` header (RFC 8288, as GitHub sends it:
/// https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api#using-link-headers).
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"))
            .then(|| url.trim().trim_start_matches('<').trim_end_matches('>').to_string())
    })
}

/// octocrab's error text without its backtrace.
fn octocrab_message(e: &octocrab::Error) -> String {
    match e {
        octocrab::Error::GitHub { source, .. } => format!("HTTP {}: {}", source.status_code, source.message),
        other => {
            let text = other.to_string();
            text.lines().next().unwrap_or_default().to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_link_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            HeaderValue::from_static(
                "<https://api.github.com/orgs/a/members?page=3>; rel=\"prev\", <https://api.github.com/orgs/a/members?page=5>; rel=\"next\", <https://api.github.com/orgs/a/members?page=9>; rel=\"last\"",
            ),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://api.github.com/orgs/a/members?page=5")
        );
        h.insert("link", HeaderValue::from_static("<https://x/y?page=1>; rel=\"first\""));
        assert_eq!(next_link(&h), None);
    }
}
