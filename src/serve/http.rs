//! serve's HTTP side: `/metrics`, `/healthz`, `/readyz` (ready once the
//! config is loaded and the scheduler runs — never gated on Git or live
//! systems, so Prometheus keeps scraping exactly when they fail), the JSON
//! API, and the status page. POST endpoints need the bearer token from
//! `server.token_env`; with a token configured the JSON API needs it too.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::Daemon;
use crate::policy::Suspension;

pub fn router(daemon: Arc<Daemon>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/targets/{name}/plan", get(plan))
        .route("/api/v1/targets/{name}/run", post(run))
        .route("/api/v1/targets/{name}/suspend", post(suspend))
        .route("/api/v1/webhook/git", post(webhook))
        .with_state(daemon)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// The configured token, if any (read from the environment each time, so
/// a rotated secret takes effect without a restart).
fn token(daemon: &Daemon) -> Option<String> {
    let var = daemon.loaded().config.server.token_env.clone()?;
    std::env::var(var).ok().filter(|t| !t.is_empty())
}

fn authorised(headers: &HeaderMap, expected: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Constant-time comparison: a token is a secret.
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The refusal, if the request may not proceed. For GET a token is needed
/// only when one is configured; for POST always.
fn refusal(daemon: &Daemon, headers: &HeaderMap, write: bool) -> Option<Response> {
    match token(daemon) {
        Some(t) if authorised(headers, &t) => None,
        Some(_) => Some(error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")),
        None if write => Some(error(
            StatusCode::FORBIDDEN,
            "POST endpoints need server.token_env naming a variable that holds the token",
        )),
        None => None,
    }
}

async fn metrics(State(daemon): State<Arc<Daemon>>) -> Response {
    let loaded = daemon.loaded();
    let plan = daemon.latest_plan();
    let gauges = crate::metrics::gauges(&loaded.config, &plan, &daemon.state()).unwrap_or_default();
    let text = format!("{gauges}{}", daemon.metrics.render());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

async fn ready(State(daemon): State<Arc<Daemon>>) -> Response {
    if daemon.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

async fn targets(State(daemon): State<Arc<Daemon>>, headers: HeaderMap) -> Response {
    if let Some(r) = refusal(&daemon, &headers, false) {
        return r;
    }
    let list: Vec<_> = daemon
        .statuses()
        .into_iter()
        .map(|s| {
            let plan = s.plan.as_ref();
            json!({
                "name": s.name,
                "provider": s.provider,
                "state": state_word(&s),
                "running": s.running,
                "exit_code": plan.map(|p| p.exit_code),
                "summary": plan.map(|p| &p.summary),
                "findings": plan.map(|p| p.findings.len()),
                "last_run": s.last_run,
                "last_success": s.last_success,
                "commit": s.source.as_ref().and_then(|src| src.commit.clone()),
                "suspended": s.suspended,
                "skipped_runs": s.skipped_runs,
            })
        })
        .collect();
    Json(json!({ "targets": list })).into_response()
}

pub fn state_word(s: &super::TargetStatus) -> &'static str {
    match (&s.plan, s.running) {
        (None, true) => "running",
        (None, false) => "pending",
        (Some(p), _) if p.exit_code == 1 => "error",
        (Some(p), _) if p.exit_code == 2 => "drift",
        (Some(_), _) => "in_sync",
    }
}

async fn plan(State(daemon): State<Arc<Daemon>>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Some(r) = refusal(&daemon, &headers, false) {
        return r;
    }
    match daemon.status(&name) {
        None => error(StatusCode::NOT_FOUND, &format!("no target named {name}")),
        Some(s) => match s.plan {
            Some(p) => Json(p).into_response(),
            None => error(
                StatusCode::NOT_FOUND,
                &format!("target {name} has not been audited yet"),
            ),
        },
    }
}

async fn run(State(daemon): State<Arc<Daemon>>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Some(r) = refusal(&daemon, &headers, true) {
        return r;
    }
    if daemon.status(&name).is_none() {
        return error(StatusCode::NOT_FOUND, &format!("no target named {name}"));
    }
    let started = daemon.clone().trigger(&name);
    (
        StatusCode::ACCEPTED,
        Json(json!({ "target": name, "started": started, "reason": (!started).then_some("an audit of this target is running") })),
    )
        .into_response()
}

async fn suspend(
    State(daemon): State<Arc<Daemon>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = refusal(&daemon, &headers, true) {
        return r;
    }
    if daemon.status(&name).is_none() {
        return error(StatusCode::NOT_FOUND, &format!("no target named {name}"));
    }
    let suspension: Suspension = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"until\", \"reason\"}}: {e}"),
            )
        }
    };
    match daemon.suspend(&name, suspension.clone()) {
        Ok(()) => (StatusCode::OK, Json(json!({ "target": name, "suspended": suspension }))).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, &e),
    }
}

async fn page(State(daemon): State<Arc<Daemon>>) -> Html<String> {
    Html(super::page::render(&daemon.statuses(), chrono::Utc::now()))
}

/// Whether `signature` (`sha256=<hex>`, GitHub's `X-Hub-Signature-256`) is
/// the HMAC-SHA256 of `body` under `secret`, compared in constant time.
pub fn signature_valid(secret: &[u8], body: &[u8], signature: &str) -> bool {
    use hmac::{Hmac, Mac};
    let Some(hex_sig) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// A push event from a Git host: fetch now and audit every target, instead
/// of waiting for the next poll. Signed like GitHub's webhooks
/// (`X-Hub-Signature-256`, secret from `server.webhook_secret_env`).
async fn webhook(State(daemon): State<Arc<Daemon>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let Some(var) = daemon.loaded().config.server.webhook_secret_env.clone() else {
        return error(StatusCode::NOT_FOUND, "webhooks are off: set server.webhook_secret_env");
    };
    let Some(secret) = std::env::var(&var).ok().filter(|s| !s.is_empty()) else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("environment variable {var} is not set"),
        );
    };
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !signature_valid(secret.as_bytes(), &body, signature) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong X-Hub-Signature-256");
    }
    let started = daemon.clone().on_push().await;
    (
        StatusCode::ACCEPTED,
        Json(json!({ "fetched": true, "audits_started": started })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_signature_example_verifies() {
        // GitHub's documented example: secret "It's a Secret to Everybody",
        // payload "Hello, World!" (docs: "Validating webhook deliveries").
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(signature_valid(b"It's a Secret to Everybody", b"Hello, World!", sig));
        assert!(!signature_valid(b"another secret", b"Hello, World!", sig));
        assert!(!signature_valid(b"It's a Secret to Everybody", b"Hello, World?", sig));
        assert!(!signature_valid(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            "sha1=abc"
        ));
        assert!(!signature_valid(b"It's a Secret to Everybody", b"Hello, World!", ""));
    }
}
