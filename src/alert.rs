//! Direct alerts to Alertmanager (`alerting.alertmanager.urls`), for users
//! without Prometheus: after every audit plumb works out which of its two
//! alerts hold for the target — `PlumbDrift` (exit code 2) and
//! `PlumbAuditFailing` (exit code 1) — and pushes them to EVERY listed peer
//! through API v2 (`POST /api/v2/alerts`), because Alertmanager peers gossip
//! silences and notifications but not alerts: a client must send each alert
//! to all of them (https://prometheus.io/docs/alerting/latest/clients/).
//!
//! Firing alerts are re-sent while the condition lasts, with `endsAt` a few
//! resend intervals ahead, as Prometheus does (rules/manager.go,
//! `sendAlerts`: endsAt = now + 4 × resend delay), so an alert plumb stops
//! sending (plumb died) resolves by itself instead of firing for ever. When
//! the target is back in sync the alert is sent once more with `endsAt` =
//! now, which resolves it at once.
//!
//! Users with Prometheus should use the shipped rules (alerts/) instead: the
//! labels differ (Prometheus adds `job` and `instance`), so with both paths
//! on, Alertmanager would group them apart and page twice (docs/serve.md).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::TargetSpec;
use crate::plan::TargetPlan;

/// How often active alerts are re-sent between audits.
pub const RESEND_EVERY: Duration = Duration::from_secs(60);
/// A firing alert's `endsAt` is this many resend intervals ahead.
const ENDS_AFTER_RESENDS: i32 = 4;
/// At most this many drifted ids are listed in the annotation.
const IDS_LISTED: usize = 20;
/// Attempts per peer for a transient failure (5xx, connect error, timeout).
const ATTEMPTS: u32 = 4;
/// One request to one peer may take this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One alert in Alertmanager's API v2 shape (`postableAlert` in
/// https://github.com/prometheus/alertmanager/blob/main/api/v2/openapi.yaml).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

impl Alert {
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map(String::as_str).unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// Names the request (method and URL without credentials) and what
    /// happened; never the body, which may quote live values.
    #[error("POST {url}: {what}")]
    Request { url: String, what: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// The alerts that hold for a target after an audit (none when in sync).
pub fn firing(spec: &TargetSpec, plan: &TargetPlan, page_url: &str, now: DateTime<Utc>) -> Vec<Alert> {
    let (name, summary) = match plan.exit_code {
        2 => (
            "PlumbDrift",
            format!(
                "{} ({}) drifts from Git: {} to create, {} to update, {} to delete, {} unmanaged",
                plan.name,
                plan.provider,
                plan.summary.create,
                plan.summary.update,
                plan.summary.delete,
                plan.summary.unmanaged
            ),
        ),
        1 => (
            "PlumbAuditFailing",
            format!("audits of {} ({}) fail", plan.name, plan.provider),
        ),
        _ => return Vec::new(),
    };
    // Target labels first, so plumb's own names win (reserved names are
    // refused at config load anyway).
    let mut labels = spec.labels.clone();
    labels.insert("alertname".into(), name.into());
    labels.insert("target".into(), plan.name.clone());
    labels.insert("provider".into(), plan.provider.clone());
    labels.insert("severity".into(), plan.severity.to_string());
    let link = format!("{}/#{}", page_url.trim_end_matches('/'), plan.name);
    let mut annotations = BTreeMap::new();
    annotations.insert("summary".into(), summary);
    annotations.insert("status_page".into(), link.clone());
    if plan.exit_code == 2 {
        let ids: Vec<&str> = plan.changes.iter().map(|c| c.id.as_str()).collect();
        let mut listed = ids.iter().take(IDS_LISTED).copied().collect::<Vec<_>>().join("\n");
        if ids.len() > IDS_LISTED {
            listed.push_str(&format!("\n… and {} more", ids.len() - IDS_LISTED));
        }
        annotations.insert("drifted".into(), listed);
    }
    if let Some(e) = &plan.error {
        // The plan's error is already free of secrets (providers never put
        // credentials in errors); keep it short for a pager.
        annotations.insert("error".into(), e.chars().take(500).collect());
    }
    vec![Alert {
        labels,
        annotations,
        starts_at: now,
        ends_at: now + chrono::Duration::from_std(RESEND_EVERY * ENDS_AFTER_RESENDS as u32).unwrap_or_default(),
        generator_url: link,
    }]
}

/// What has been sent per target, so that re-sends keep `startsAt` and a
/// target back in sync resolves exactly the alerts that fired.
pub struct Alerter {
    client: reqwest::Client,
    urls: Mutex<Vec<String>>,
    active: Mutex<BTreeMap<String, Vec<Alert>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `http://am:9093` → `http://am:9093/api/v2/alerts`; a full URL is kept.
fn endpoint(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.ends_with("/api/v2/alerts") {
        url.to_string()
    } else {
        format!("{url}/api/v2/alerts")
    }
}

/// The URL without user and password, for messages.
fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "(unparsable URL)".into(),
    }
}

impl Alerter {
    pub fn new(urls: &[String]) -> Result<Alerter, AlertError> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| AlertError::Client(e.to_string()))?;
        Ok(Alerter {
            client,
            urls: Mutex::new(urls.to_vec()),
            active: Mutex::new(BTreeMap::new()),
        })
    }

    /// New peers after a config reload; what is active stays active.
    pub fn set_urls(&self, urls: &[String]) {
        *lock(&self.urls) = urls.to_vec();
    }

    pub fn has_peers(&self) -> bool {
        !lock(&self.urls).is_empty()
    }

    /// Alerts currently firing, for tests and the API.
    pub fn active(&self) -> Vec<Alert> {
        lock(&self.active).values().flatten().cloned().collect()
    }

    /// Folds in the latest audit of a target and returns what to send: the
    /// alerts that hold (keeping their first `startsAt`) and, resolved with
    /// `endsAt` = now, those that held before and no longer do.
    pub fn update(&self, target: &str, now_firing: Vec<Alert>, now: DateTime<Utc>) -> Vec<Alert> {
        let mut active = lock(&self.active);
        let before = active.remove(target).unwrap_or_default();
        let mut out = Vec::new();
        let mut kept = Vec::new();
        for mut alert in now_firing {
            if let Some(old) = before.iter().find(|o| o.labels == alert.labels) {
                alert.starts_at = old.starts_at;
            }
            kept.push(alert.clone());
            out.push(alert);
        }
        for mut old in before {
            if !kept.iter().any(|k| k.labels == old.labels) {
                old.ends_at = now;
                out.push(old);
            }
        }
        if !kept.is_empty() {
            active.insert(target.to_string(), kept);
        }
        out
    }

    /// Resolves the alerts of targets no longer configured and returns
    /// every active alert with a fresh `endsAt`, for the periodic re-send.
    pub fn refresh(&self, configured: &[&str], now: DateTime<Utc>) -> Vec<Alert> {
        let mut active = lock(&self.active);
        let mut out = Vec::new();
        let gone: Vec<String> = active
            .keys()
            .filter(|k| !configured.contains(&k.as_str()))
            .cloned()
            .collect();
        for target in gone {
            for mut a in active.remove(&target).unwrap_or_default() {
                a.ends_at = now;
                out.push(a);
            }
        }
        let ends = now + chrono::Duration::from_std(RESEND_EVERY * ENDS_AFTER_RESENDS as u32).unwrap_or_default();
        for alerts in active.values_mut() {
            for a in alerts.iter_mut() {
                a.ends_at = ends;
                out.push(a.clone());
            }
        }
        out
    }

    /// Sends `alerts` to every peer at once; returns the failures (the
    /// caller logs and counts them — a peer down must not stop the others).
    pub async fn send(&self, alerts: &[Alert]) -> Vec<AlertError> {
        if alerts.is_empty() {
            return Vec::new();
        }
        let urls = lock(&self.urls).clone();
        let sends = urls.iter().map(|u| self.send_one(u, alerts));
        futures_util::future::join_all(sends)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect()
    }

    /// One peer, with bounded exponential backoff for transient failures
    /// (connect errors, timeouts, 5xx, 429 with its Retry-After).
    async fn send_one(&self, url: &str, alerts: &[Alert]) -> Result<(), AlertError> {
        let target = endpoint(url);
        let shown = redacted(&target);
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            let result = self.client.post(&target).json(alerts).send().await;
            let (retry, what, wait) = match result {
                Ok(r) if r.status().is_success() => {
                    tracing::debug!(url = %shown, alerts = alerts.len(), "alerts sent");
                    return Ok(());
                }
                Ok(r) => {
                    let status = r.status();
                    let after = r
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(30)));
                    let transient = status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
                    (transient, format!("{status}"), after.unwrap_or(delay))
                }
                Err(e) => {
                    let transient = e.is_connect() || e.is_timeout() || e.is_request();
                    // reqwest's error text may carry the URL; use ours.
                    let kind = if e.is_timeout() {
                        "timed out"
                    } else if e.is_connect() {
                        "cannot connect"
                    } else {
                        "request failed"
                    };
                    (transient, kind.to_string(), delay)
                }
            };
            if !retry || attempt >= ATTEMPTS {
                return Err(AlertError::Request {
                    url: shown,
                    what: format!("{what} (after {attempt} attempt(s))"),
                });
            }
            tracing::debug!(url = %shown, attempt, error = %what, "alert push failed; retrying");
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(Duration::from_secs(5));
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_appends_the_api_path_once() {
        assert_eq!(endpoint("http://am:9093"), "http://am:9093/api/v2/alerts");
        assert_eq!(endpoint("http://am:9093/"), "http://am:9093/api/v2/alerts");
        assert_eq!(endpoint("http://am:9093/api/v2/alerts"), "http://am:9093/api/v2/alerts");
    }

    #[test]
    fn redacted_drops_credentials() {
        let r = redacted("https://bob:s3cret@am.example/api/v2/alerts");
        assert!(!r.contains("s3cret") && !r.contains("bob"), "{r}");
        assert!(r.contains("am.example/api/v2/alerts"));
    }
}
