//! The HTTP client: authentication from the environment, bounded retries
//! with exponential backoff for transient failures (5xx, connect errors,
//! timeouts), waiting out 429 answers as `Retry-After` says, and errors
//! that name the request and status but never a credential.

use std::time::Duration;

use base64::Engine;
use plumb_model::{Ctx, ProviderError};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use crate::connection::{AuthSpec, Connection};

/// First retry delay; doubled per attempt up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The longest `Retry-After` plumb honours; longer waits fail the request
/// (the audit's own timeout would end it anyway).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// One authenticated connection to a Grafana. The `Debug` form leaves out
/// the authorization header.
pub struct Client {
    http: reqwest::Client,
    base: Url,
    authorization: String,
    /// "the token from $GRAFANA_TOKEN (connection.token_env)", for messages.
    credential: String,
    timeout: Duration,
    retries: u32,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// An answer other than success, after retries.
#[derive(Debug)]
pub struct Failure {
    pub status: Option<u16>,
    pub error: ProviderError,
}

impl From<Failure> for ProviderError {
    fn from(f: Failure) -> Self {
        f.error
    }
}

/// Grafana's error text: `message`, plus the documented `status` code of a
/// 412 (`version-mismatch`, `name-exists`; dashboard.md).
fn message_of(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(v) => {
            let message = v.get("message").and_then(Value::as_str).unwrap_or_default();
            match v.get("status").and_then(Value::as_str) {
                Some(s) if !message.is_empty() => format!("{message} ({s})"),
                _ if !message.is_empty() => message.to_string(),
                _ => body.chars().take(300).collect(),
            }
        }
        Err(_) => body.chars().take(300).collect(),
    }
}

/// `Retry-After` as seconds or an HTTP date (RFC 9110 §10.2.3).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

fn backoff(attempt: u32) -> Duration {
    BASE_BACKOFF.saturating_mul(1u32 << attempt.min(16)).min(MAX_BACKOFF)
}

impl Client {
    /// Reads the credentials the connection names and builds the client.
    /// Each request is bounded by the connection's `request_timeout`, and
    /// never by more than `ctx.timeout`.
    pub fn new(conn: &Connection, ctx: &Ctx) -> Result<Client, ProviderError> {
        let (authorization, credential) = match &conn.auth {
            AuthSpec::Token { token_env } => {
                let token = ctx.secret("token_env", token_env)?;
                (
                    format!("Bearer {token}"),
                    format!("the token from ${token_env} (connection.token_env)"),
                )
            }
            AuthSpec::Basic {
                username_env,
                password_env,
            } => {
                let user = ctx.secret("username_env", username_env)?;
                let password = ctx.secret("password_env", password_env)?;
                let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                (
                    format!("Basic {encoded}"),
                    format!("the username and password from ${username_env} and ${password_env}"),
                )
            }
        };
        let timeout = conn.request_timeout.min(ctx.timeout);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("plumb-grafana/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Other(format!("could not build the HTTP client: {e}")))?;
        Ok(Client {
            http,
            base: conn.url.clone(),
            authorization,
            credential,
            timeout,
            retries: conn.retries,
        })
    }

    /// `path` (no leading slash) below the base URL, with `query`.
    pub fn url(&self, path: &str, query: &[(&str, String)]) -> Result<Url, ProviderError> {
        let mut url = self
            .base
            .join(path)
            .map_err(|e| ProviderError::Other(format!("bad request path {path:?}: {e}")))?;
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// Sends one request, retrying what is transient, and returns the JSON
    /// answer of a 2xx.
    pub async fn call(&self, method: Method, url: Url, body: Option<&Value>) -> Result<Value, Failure> {
        self.call_accepting(method, url, body, "application/json").await
    }

    /// [`Client::call`] with another `Accept` header (the `/apis`
    /// endpoints negotiate representations through it).
    pub async fn call_accepting(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        accept: &str,
    ) -> Result<Value, Failure> {
        let request = format!("{method} {url}");
        let mut attempt: u32 = 0;
        loop {
            let mut builder = self
                .http
                .request(method.clone(), url.clone())
                .header(reqwest::header::AUTHORIZATION, &self.authorization)
                .header(reqwest::header::ACCEPT, accept);
            if let Some(b) = body {
                builder = builder.json(b);
            }
            let outcome = builder.send().await;
            let (wait, last) = match outcome {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let text = match resp.text().await {
                        Ok(t) => t,
                        Err(e) if attempt < self.retries && (e.is_timeout() || e.is_body()) => {
                            tracing::debug!(%request, error = %e, "reading the answer failed; retrying");
                            attempt += 1;
                            tokio::time::sleep(backoff(attempt - 1)).await;
                            continue;
                        }
                        Err(e) => return Err(self.transport(&request, e)),
                    };
                    if status.is_success() {
                        return serde_json::from_str(&text).map_err(|e| Failure {
                            status: Some(status.as_u16()),
                            error: ProviderError::Api {
                                request: request.clone(),
                                status: Some(status.as_u16()),
                                message: format!("answer is not JSON: {e}"),
                            },
                        });
                    }
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        let wait = retry_after(&headers).unwrap_or_else(|| backoff(attempt));
                        if wait > MAX_RETRY_AFTER {
                            return Err(self.status_error(&request, status, &text));
                        }
                        (wait, self.status_error(&request, status, &text))
                    } else if status.is_server_error() {
                        let wait = retry_after(&headers)
                            .filter(|w| *w <= MAX_RETRY_AFTER)
                            .unwrap_or_else(|| backoff(attempt));
                        (wait, self.status_error(&request, status, &text))
                    } else {
                        return Err(self.status_error(&request, status, &text));
                    }
                }
                Err(e) if e.is_timeout() || e.is_connect() || e.is_request() => {
                    (backoff(attempt), self.transport(&request, e))
                }
                Err(e) => return Err(self.transport(&request, e)),
            };
            if attempt >= self.retries {
                return Err(last);
            }
            tracing::debug!(%request, attempt = attempt + 1, wait_ms = wait.as_millis() as u64, error = %last.error, "transient failure; retrying");
            attempt += 1;
            tokio::time::sleep(wait).await;
        }
    }

    /// GET returning JSON.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, Failure> {
        let url = self.url(path, query).map_err(|error| Failure { status: None, error })?;
        self.call(Method::GET, url, None).await
    }

    /// GET returning JSON, with `accept` as the `Accept` header.
    pub async fn get_accepting(&self, path: &str, query: &[(&str, String)], accept: &str) -> Result<Value, Failure> {
        let url = self.url(path, query).map_err(|error| Failure { status: None, error })?;
        self.call_accepting(Method::GET, url, None, accept).await
    }

    fn transport(&self, request: &str, e: reqwest::Error) -> Failure {
        if e.is_timeout() {
            return Failure {
                status: None,
                error: ProviderError::Timeout {
                    what: request.to_string(),
                    after: self.timeout,
                },
            };
        }
        // reqwest's text names the URL, which carries no credentials
        // (connection parsing refuses them); strip it anyway for brevity.
        let text = e.without_url().to_string();
        Failure {
            status: None,
            error: ProviderError::Api {
                request: request.to_string(),
                status: None,
                message: text,
            },
        }
    }

    fn status_error(&self, request: &str, status: StatusCode, body: &str) -> Failure {
        let said = message_of(body);
        let message = match status {
            StatusCode::UNAUTHORIZED => format!("Grafana rejected {}: {said}", self.credential),
            StatusCode::FORBIDDEN => format!("{said} ({} lacks this permission)", self.credential),
            _ => said,
        };
        Failure {
            status: Some(status.as_u16()),
            error: ProviderError::Api {
                request: request.to_string(),
                status: Some(status.as_u16()),
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_grafana_status_codes() {
        assert_eq!(
            message_of(r#"{"message":"The dashboard has been changed by someone else","status":"version-mismatch"}"#),
            "The dashboard has been changed by someone else (version-mismatch)"
        );
        assert_eq!(message_of("<html>oops"), "<html>oops");
    }

    #[test]
    fn backoff_is_bounded() {
        assert_eq!(backoff(0), Duration::from_millis(200));
        assert_eq!(backoff(2), Duration::from_millis(800));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }

    #[test]
    fn retry_after_reads_seconds() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
    }
}
