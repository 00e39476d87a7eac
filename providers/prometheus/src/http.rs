//! The HTTP client both backends share: a timeout on every request, retries
//! of transient failures (connect errors, timeouts, 5xx) with bounded
//! exponential backoff, `429`/`503` answers waited out as `Retry-After`
//! says (capped), and errors that name the request (method and URL, never
//! credentials) and the status.

use std::time::Duration;

use plumb_model::ProviderError;
use reqwest::{Method, StatusCode};

/// A response whose status was a success.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: String,
}

/// One backend's client.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    retries: u32,
    /// Extra headers on every request (`X-Scope-OrgID`).
    headers: Vec<(&'static str, String)>,
    /// First backoff step; doubled per attempt up to [`MAX_BACKOFF`].
    pub base_backoff: Duration,
}

/// The longest single wait between attempts, also the cap on `Retry-After`.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl Client {
    pub fn new(timeout: Duration, retries: u32, headers: Vec<(&'static str, String)>) -> Result<Client, ProviderError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("plumb/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Config(format!("could not build the HTTP client: {e}")))?;
        Ok(Client {
            http,
            retries,
            headers,
            base_backoff: Duration::from_millis(200),
        })
    }

    /// Sends a request; `ok` lists statuses besides 2xx that are answers
    /// rather than errors (a ruler's 404 for "no rule groups").
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<(&'static str, String)>,
        ok: &[u16],
    ) -> Result<Answer, ProviderError> {
        let request = format!("{method} {url}");
        let mut attempt = 0u32;
        loop {
            let mut builder = self.http.request(method.clone(), url);
            for (name, value) in &self.headers {
                builder = builder.header(*name, value);
            }
            if let Some((content_type, text)) = &body {
                builder = builder.header("content-type", *content_type).body(text.clone());
            }
            let wait = match builder.send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = response.text().await.unwrap_or_default();
                    if status.is_success() || ok.contains(&status.as_u16()) {
                        return Ok(Answer { status, body: text });
                    }
                    let transient = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
                    if !transient || attempt >= self.retries {
                        return Err(ProviderError::Api {
                            request,
                            status: Some(status.as_u16()),
                            message: short(&text),
                        });
                    }
                    retry_after.unwrap_or_else(|| self.backoff(attempt)).min(MAX_BACKOFF)
                }
                Err(e) => {
                    let transient = e.is_connect() || e.is_timeout() || e.is_request();
                    if !transient || attempt >= self.retries {
                        return Err(ProviderError::Api {
                            request,
                            status: None,
                            message: describe(&e),
                        });
                    }
                    self.backoff(attempt)
                }
            };
            attempt += 1;
            tracing::debug!(%request, attempt, wait_ms = wait.as_millis() as u64, "retrying after a transient failure");
            tokio::time::sleep(wait).await;
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.base_backoff
            .saturating_mul(1u32 << attempt.min(8))
            .min(MAX_BACKOFF)
    }
}

/// reqwest's message without the URL it repeats (the request names it).
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The first line of an error body, bounded, for messages.
pub fn short(text: &str) -> String {
    let t = text.trim();
    let mut s: String = t.chars().take(300).collect();
    if t.chars().count() > 300 {
        s.push('…');
    }
    s
}
