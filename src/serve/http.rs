//! serve's HTTP side: `/metrics`, `/healthz`, `/readyz` (ready once the
//! config is loaded and the scheduler runs — never gated on Git or live
//! systems, so Prometheus keeps scraping exactly when they fail), the JSON
//! API, and the status page. POST endpoints need the bearer token from
//! `server.token_env`; with a token configured everything but `/metrics`,
//! `/healthz` and `/readyz` needs it, the status page included: a browser
//! signs in once at `/login` and gets an HttpOnly, SameSite=Strict cookie
//! holding an HMAC of the token (never the token itself).

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
        .route("/login", get(login_form).post(login))
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

/// What the API is guarded by: no token configured, a token, or a token
/// configured but missing from the environment (then nothing is served
/// that needs it: fail closed).
enum Guard {
    Open,
    Token(String),
    Missing(String),
}

/// Read from the environment each time, so a rotated secret takes effect
/// without a restart.
fn guard(daemon: &Daemon) -> Guard {
    match daemon.loaded().config.server.token_env.clone() {
        None => Guard::Open,
        Some(var) => match std::env::var(&var).ok().filter(|t| !t.is_empty()) {
            Some(token) => Guard::Token(token),
            None => Guard::Missing(var),
        },
    }
}

use crate::mask::same_secret as same;

const SESSION_COOKIE: &str = "plumb_session";

/// The cookie value a browser holds after signing in: an HMAC of the
/// token, so the cookie is worthless once the token is rotated and never
/// reveals it.
fn session_value(token: &str) -> String {
    use hmac::{Hmac, Mac};
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes()) else {
        return String::new();
    };
    mac.update(b"plumb status page session");
    hex::encode(mac.finalize().into_bytes())
}

fn bearer_ok(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| same(given.as_bytes(), token.as_bytes()))
}

fn cookie_ok(headers: &HeaderMap, token: &str) -> bool {
    let expected = session_value(token);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(name, value)| name == SESSION_COOKIE && same(value.as_bytes(), expected.as_bytes()))
}

/// The refusal, if the request may not proceed. Reads need the token when
/// one is configured (bearer, or the sign-in cookie); writes always need
/// the bearer token (a cookie is never enough to change anything).
fn refusal(daemon: &Daemon, headers: &HeaderMap, write: bool) -> Option<Response> {
    match guard(daemon) {
        Guard::Token(t) if bearer_ok(headers, &t) || (!write && cookie_ok(headers, &t)) => None,
        Guard::Token(_) => Some(error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")),
        Guard::Missing(var) => {
            tracing::error!(variable = %var, "server.token_env is set but the variable is empty; refusing API requests");
            Some(error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the API token variable {var} is not set; nothing that needs it is served"),
            ))
        }
        Guard::Open if write => Some(error(
            StatusCode::FORBIDDEN,
            "POST endpoints need server.token_env naming a variable that holds the token",
        )),
        Guard::Open => None,
    }
}

const LOGIN_PAGE: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>plumb: sign in</title></head><body style=\"font-family:system-ui,sans-serif;margin:2em\"><h1>plumb</h1><p>MESSAGE</p><form method=\"post\" action=\"/login\"><label>API token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" autofocus></label> <button type=\"submit\">Sign in</button></form></body></html>\n";

fn login_page(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Html(LOGIN_PAGE.replace("MESSAGE", message)),
    )
        .into_response()
}

async fn login_form() -> Response {
    login_page(StatusCode::OK, "This status page needs the API token.")
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

/// Checks the token from the form and sets the session cookie.
async fn login(State(daemon): State<Arc<Daemon>>, form: axum::Form<LoginForm>) -> Response {
    match guard(&daemon) {
        Guard::Token(t) if same(form.token.as_bytes(), t.as_bytes()) => (
            StatusCode::SEE_OTHER,
            [
                (
                    header::SET_COOKIE,
                    format!(
                        "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
                        session_value(&t)
                    ),
                ),
                (header::LOCATION, "/".to_string()),
            ],
        )
            .into_response(),
        Guard::Token(_) => {
            tracing::warn!("status page sign-in with a wrong token");
            login_page(StatusCode::UNAUTHORIZED, "That is not the API token.")
        }
        Guard::Missing(_) | Guard::Open => (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response(),
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

async fn page(State(daemon): State<Arc<Daemon>>, headers: HeaderMap) -> Response {
    match guard(&daemon) {
        Guard::Token(t) if bearer_ok(&headers, &t) || cookie_ok(&headers, &t) => {}
        Guard::Token(_) => return login_page(StatusCode::UNAUTHORIZED, "This status page needs the API token."),
        Guard::Missing(var) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the API token variable {var} is not set; the status page is not served"),
            )
        }
        Guard::Open => {}
    }
    Html(super::page::render(&daemon.statuses(), chrono::Utc::now())).into_response()
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
    // Only after the signature holds: an unsigned request cannot use up ids.
    let delivery = [
        "x-github-delivery",
        "x-gitea-delivery",
        "x-gogs-delivery",
        "x-gitlab-event-uuid",
    ]
    .iter()
    .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
    .map(str::to_string);
    if let Some(id) = &delivery {
        if !daemon.first_delivery(id) {
            tracing::warn!(delivery = %id, "webhook delivery replayed; ignored");
            return (
                StatusCode::OK,
                Json(json!({ "duplicate": true, "delivery": id, "fetched": false })),
            )
                .into_response();
        }
    }
    match daemon.clone().on_push_coalesced().await {
        Some(started) => (
            StatusCode::ACCEPTED,
            Json(json!({ "fetched": true, "audits_started": started, "delivery": delivery })),
        )
            .into_response(),
        None => (
            StatusCode::ACCEPTED,
            Json(json!({ "fetched": false, "coalesced": true, "delivery": delivery })),
        )
            .into_response(),
    }
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
