//! A GitHub REST simulator: an axum server on a free loopback port that
//! answers the organisation endpoints plumb uses the way GitHub documents
//! them, so the provider's tests, its benchmarks and `plumb demo` run without
//! github.com. Each rule cites its source next to the code.
//!
//! What it follows:
//! - auth by `Authorization: Bearer|token <token>`: an unknown token is
//!   `401 {"message": "Bad credentials"}`, none is `401 "Requires
//!   authentication"`; owner-only endpoints answer 403 to a token whose
//!   user is not an org owner;
//! - `GET /user`, `GET/PATCH /orgs/{org}`;
//! - `GET /orgs/{org}/members?role=all|admin|member`,
//!   `GET/PUT/DELETE /orgs/{org}/memberships/{user}` (PUT invites a
//!   non-member: state `pending`), `GET /orgs/{org}/invitations`,
//!   `GET /orgs/{org}/failed_invitations`, `GET /orgs/{org}/outside_collaborators`;
//! - teams: `GET/POST /orgs/{org}/teams` (the creator becomes maintainer;
//!   privacy defaults to `secret`, `closed` when nested),
//!   `GET/PATCH/DELETE /orgs/{org}/teams/{slug}` (renaming changes the slug,
//!   deleting a parent deletes its children), `GET .../members?role=` (including
//!   members of child teams; org owners listed as maintainers),
//!   `PUT/DELETE .../memberships/{user}`, `GET .../repos`,
//!   `PUT/DELETE .../repos/{owner}/{repo}`;
//! - `per_page` (default 30, max 100) and `page`, with a `Link` header built
//!   from the request's `Host`;
//! - weak `ETag`s on every 200 GET and `If-None-Match` → `304` that does not
//!   charge the rate limit; `x-ratelimit-limit/remaining/used/reset/resource`
//!   on every answer; a spent limit answers `403` with GitHub's message;
//! - fault injection (status, `Retry-After`, body; a secondary limit is a
//!   `Fault::secondary_limit`), a request log, and an optional path prefix
//!   (`/api/v3`, as GitHub Enterprise Server serves it);
//! - GitHub Apps ([`Sim::register_app`]): `GET /app`, `GET /app/installations`,
//!   `GET /orgs/{org}/installation` and
//!   `POST /app/installations/{installation_id}/access_tokens` take a JWT
//!   (RS256, verified with the App's registered public key; `iss`, `iat`,
//!   `exp` checked as GitHub documents, refused with GitHub's 401 wording);
//!   installation tokens (`ghs_…`) last an hour (configurable with
//!   [`Sim::set_installation_token_lifetime`]), then answer `401 Bad
//!   credentials`; an installation may administer its own org only (`403
//!   Resource not accessible by integration` elsewhere and on `GET /user`).
//!
//! What it leaves out: the App's own rate limit (JWT requests are not
//! charged; installation tokens get a user token's 5,000), per-installation
//! permission sets (every installation has members and administration
//! write), repository-scoped tokens, suspended installations, the
//! `Integration not found` answer (an unknown `iss` is "A JSON web token
//! could not be decoded"), client IDs as `iss`, GraphQL, organisation roles other than owner/member (billing
//! managers, custom roles), team synchronisation with an IdP, team
//! invitations listing, repository existence (any repo name is accepted),
//! email invitations, SSO/SAML, the secondary limit's point accounting (it
//! is only injected), and `X-GitHub-Request-Id`. Times are wall-clock.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Path as UrlPath, Query, Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Extension, Json, Router};
use plumb_model::loopback::{self, LoopbackServer};
use plumb_model::ProviderError;
use serde_json::{json, Map, Value};

/// The primary limit of a user token on github.com
/// (https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api).
pub const RATE_LIMIT: u64 = 5000;
const DOCS: &str = "https://docs.github.com/rest";

/// A failure the simulator answers instead of the real handler.
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: Option<String>,
    /// Requests whose path (below the prefix) starts with this.
    pub path_prefix: String,
    pub status: u16,
    pub retry_after: Option<u64>,
    pub message: String,
    pub times: usize,
}

impl Fault {
    /// `times` answers of `status` (e.g. 502) below `path_prefix`.
    pub fn status(path_prefix: &str, status: u16, times: usize) -> Fault {
        Fault {
            method: None,
            path_prefix: path_prefix.into(),
            status,
            retry_after: None,
            message: "Server Error".into(),
            times,
        }
    }

    /// A secondary rate limit: 403 with `retry-after` and GitHub's wording
    /// (https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits).
    pub fn secondary_limit(path_prefix: &str, retry_after: u64, times: usize) -> Fault {
        Fault {
            method: None,
            path_prefix: path_prefix.into(),
            status: 403,
            retry_after: Some(retry_after),
            message: "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.".into(),
            times,
        }
    }
}

/// One request as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    /// Path and query, below the prefix.
    pub path: String,
    pub status: u16,
    /// Whether it cost a rate-limit point (304s do not).
    pub charged: bool,
}

/// How to start a simulator.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Serve below this path (`/api/v3` for GitHub Enterprise Server).
    pub path_prefix: Option<String>,
    /// (token, login): each login becomes a GitHub user.
    pub tokens: Vec<(String, String)>,
}

impl Default for SimOptions {
    /// `sim-admin-token` acts as `plumb-bot`, which [`Sim::seed_dir`] makes
    /// an owner of every seeded org; `sim-member-token` as `octo-member`, a
    /// plain member.
    fn default() -> Self {
        SimOptions {
            path_prefix: None,
            tokens: vec![
                ("sim-admin-token".into(), "plumb-bot".into()),
                ("sim-member-token".into(), "octo-member".into()),
            ],
        }
    }
}

#[derive(Debug, Clone)]
struct Invitation {
    id: u64,
    login: String,
    role: String,
    created_at: chrono::DateTime<chrono::Utc>,
    failed: Option<(String, String)>,
    /// Teams (slug, role) joined on acceptance.
    teams: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
struct Team {
    id: u64,
    name: String,
    slug: String,
    description: String,
    privacy: String,
    parent: Option<String>,
    /// lower login → (login, role)
    members: BTreeMap<String, (String, String)>,
    repos: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default)]
struct Org {
    login: String,
    id: u64,
    settings: Map<String, Value>,
    /// lower login → (login, role)
    members: BTreeMap<String, (String, String)>,
    invitations: Vec<Invitation>,
    outside: Vec<String>,
    teams: BTreeMap<String, Team>,
}

#[derive(Debug, Default)]
struct State {
    orgs: BTreeMap<String, Org>,
    /// lower login → (login, id): users that exist on this GitHub.
    users: BTreeMap<String, (String, u64)>,
    tokens: HashMap<String, String>,
    /// token → (remaining, reset epoch seconds)
    rate: HashMap<String, (u64, u64)>,
    faults: Vec<Fault>,
    log: Vec<Logged>,
    next_id: u64,
    prefix: String,
    /// The first token's user: made an owner of every seeded org.
    owner: Option<String>,
    /// GitHub Apps by id, their installations by id, and the installation
    /// tokens minted so far.
    apps: BTreeMap<u64, SimApp>,
    installations: BTreeMap<u64, SimInstallation>,
    install_tokens: HashMap<String, InstallToken>,
    /// Lifetime of new installation tokens; GitHub's hour when `None`.
    token_lifetime: Option<chrono::Duration>,
}

#[derive(Debug, Clone)]
struct SimApp {
    slug: String,
    /// The public key GitHub keeps for the App (PEM), checked at
    /// registration.
    public_pem: Vec<u8>,
}

#[derive(Debug, Clone)]
struct SimInstallation {
    app_id: u64,
    /// The org's login.
    org: String,
    org_id: u64,
}

#[derive(Debug, Clone)]
struct InstallToken {
    installation: u64,
    expires_at: chrono::DateTime<chrono::Utc>,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn user(&mut self, login: &str) -> (String, u64) {
        if let Some(u) = self.users.get(&login.to_lowercase()) {
            return u.clone();
        }
        let id = self.id();
        self.users.insert(login.to_lowercase(), (login.to_string(), id));
        (login.to_string(), id)
    }

    fn org_mut(&mut self, org: &str) -> &mut Org {
        let key = org.to_lowercase();
        if !self.orgs.contains_key(&key) {
            let id = self.id();
            self.orgs.insert(
                key.clone(),
                Org {
                    login: org.to_string(),
                    id,
                    ..Default::default()
                },
            );
        }
        self.orgs.get_mut(&key).unwrap_or_else(|| unreachable!())
    }
}

/// Who is asking (set by the gate).
#[derive(Debug, Clone)]
struct Caller {
    login: String,
    /// An App installation token: its installation.
    installation: Option<u64>,
    /// A JWT: the App it was signed for.
    app: Option<u64>,
}

impl Caller {
    fn user(login: String) -> Caller {
        Caller {
            login,
            installation: None,
            app: None,
        }
    }
}

/// Answered to an installation token outside its installation's grant
/// (https://docs.github.com/en/rest/authentication/permissions-required-for-github-apps).
const NOT_ACCESSIBLE: &str = "Resource not accessible by integration";

/// Refuses a caller that may not administer `org`: a user who is not an
/// owner, or an installation token of another org. Installations are
/// granted "Members" and "Administration" write on their org.
/// The answer for a write to `org` by `c` that may not proceed: 404 for an
/// org that does not exist (GitHub hides it), else [`deny`]'s answer.
fn refuse_unless_admin(st: &State, org: &str, c: &Caller) -> Option<Response> {
    if !st.orgs.contains_key(&org.to_lowercase()) {
        return Some(not_found());
    }
    deny(st, org, c)
}

fn deny(st: &State, org: &str, c: &Caller) -> Option<Response> {
    match c.installation {
        Some(id) => {
            let ok = st
                .installations
                .get(&id)
                .is_some_and(|i| i.org.eq_ignore_ascii_case(org));
            (!ok).then(|| error(StatusCode::FORBIDDEN, NOT_ACCESSIBLE))
        }
        None => (!is_owner(st, org, &c.login)).then(owner_required),
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    // GitHub's error body: message, documentation_url and the status as a
    // string (https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api).
    (
        status,
        Json(json!({"message": message, "documentation_url": DOCS, "status": status.as_u16().to_string()})),
    )
        .into_response()
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not Found")
}

fn validation(resource: &str, field: &str, message: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({
            "message": "Validation Failed",
            "errors": [{"resource": resource, "code": "custom", "field": field, "message": message}],
            "documentation_url": DOCS,
            "status": "422",
        })),
    )
        .into_response()
}

fn owner_required() -> Response {
    error(
        StatusCode::FORBIDDEN,
        "You must be an organization owner to perform this action.",
    )
}

fn is_owner(st: &State, org: &str, login: &str) -> bool {
    st.orgs
        .get(&org.to_lowercase())
        .and_then(|o| o.members.get(&login.to_lowercase()))
        .is_some_and(|(_, r)| r == "admin")
}

fn user_json(st: &State, login: &str) -> Value {
    let (login, id) = st
        .users
        .get(&login.to_lowercase())
        .cloned()
        .unwrap_or_else(|| (login.to_string(), 0));
    json!({"login": login, "id": id, "type": "User", "site_admin": false})
}

/// Pagination: `per_page` (default 30, max 100) and `page` (from 1), with a
/// `Link` header of first/prev/next/last built from the request's host
/// (https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api).
fn paged(items: Vec<Value>, q: &HashMap<String, String>, headers: &HeaderMap, prefix: &str, path: &str) -> Response {
    let per_page = q
        .get("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|p| *p > 0)
        .unwrap_or(30)
        .min(100);
    let page = q
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|p| *p > 0)
        .unwrap_or(1);
    let last = items.len().div_ceil(per_page).max(1);
    let slice: Vec<Value> = items.into_iter().skip((page - 1) * per_page).take(per_page).collect();
    let mut response = Json(Value::Array(slice)).into_response();
    if last > 1 {
        let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
        let mut query: Vec<(String, String)> = q
            .iter()
            .filter(|(k, _)| k.as_str() != "page")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        query.sort();
        let base: String = query.iter().map(|(k, v)| format!("{k}={v}&")).collect();
        let link = |p: usize, rel: &str| format!("<http://{host}{prefix}{path}?{base}page={p}>; rel=\"{rel}\"");
        let mut links = Vec::new();
        if page > 1 {
            links.push(link(page - 1, "prev"));
        }
        if page < last {
            links.push(link(page + 1, "next"));
            links.push(link(last, "last"));
        }
        if page > 1 {
            links.push(link(1, "first"));
        }
        if let Ok(v) = HeaderValue::from_str(&links.join(", ")) {
            response.headers_mut().insert("link", v);
        }
    }
    response
}

/// Auth, faults, rate limit, ETags and the request log around every handler.
async fn gate(AxState(state): AxState<Shared>, mut req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let prefix = lock(&state).prefix.clone();
    let rel = path.strip_prefix(&prefix).unwrap_or(&path).to_string();
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("token ")))
        .map(str::to_string);
    let if_none_match = req
        .headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let now = chrono::Utc::now().timestamp() as u64;

    let (caller, early) = {
        let mut st = lock(&state);
        let fault = st.faults.iter_mut().find(|f| {
            f.times > 0
                && rel.starts_with(&f.path_prefix)
                && f.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(&method))
        });
        let faulted = fault.map(|f| {
            f.times -= 1;
            f.clone()
        });
        let who = match &token {
            None => Err("Requires authentication".to_string()),
            Some(t) if jwt_endpoint(&rel) => verify_jwt(&st, t, now as i64).map(|(app, slug)| Caller {
                login: slug,
                installation: None,
                app: Some(app),
            }),
            Some(t) => caller_for_token(&st, t).ok_or_else(|| "Bad credentials".to_string()),
        };
        match who {
            Err(message) => (None, Some(error(StatusCode::UNAUTHORIZED, &message))),
            Ok(caller) => {
                // JWT requests are not charged to a token's limit here (the
                // simulator leaves the App's own limit out).
                let remaining = match (&token, caller.app) {
                    (Some(t), None) => {
                        let (remaining, reset) = *st.rate.entry(t.clone()).or_insert((RATE_LIMIT, now + 3600));
                        let (remaining, reset) = if reset <= now {
                            (RATE_LIMIT, now + 3600)
                        } else {
                            (remaining, reset)
                        };
                        st.rate.insert(t.clone(), (remaining, reset));
                        Some(remaining)
                    }
                    _ => None,
                };
                if let Some(f) = faulted {
                    let mut r = error(
                        StatusCode::from_u16(f.status).unwrap_or(StatusCode::BAD_GATEWAY),
                        &f.message,
                    );
                    if let Some(s) = f.retry_after {
                        r.headers_mut().insert("retry-after", HeaderValue::from(s));
                    }
                    (Some(caller), Some(r))
                } else if remaining == Some(0) {
                    // https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-rate-limit
                    let id = st
                        .users
                        .get(&caller.login.to_lowercase())
                        .map(|u| u.1)
                        .unwrap_or_default();
                    (
                        Some(caller),
                        Some(error(
                            StatusCode::FORBIDDEN,
                            &format!("API rate limit exceeded for user ID {id}."),
                        )),
                    )
                } else {
                    (Some(caller), None)
                }
            }
        }
    };

    let mut response = match early {
        Some(r) => r,
        None => {
            if let Some(c) = &caller {
                req.extensions_mut().insert(c.clone());
            }
            next.run(req).await
        }
    };
    let mut charged = response.status() != StatusCode::UNAUTHORIZED;
    // ETag on a 200 GET: the body's hash, weak as GitHub sends for lists.
    if method == "GET" && response.status() == StatusCode::OK {
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut h);
        if let Some(l) = parts.headers.get("link") {
            l.as_bytes().hash(&mut h);
        }
        let etag = format!("W/\"{:016x}\"", h.finish());
        if if_none_match.as_deref() == Some(etag.as_str()) {
            // "Making a conditional request does not count against your
            // primary rate limit if a 304 response is returned"
            // (https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api#use-conditional-requests-if-appropriate).
            let mut r = StatusCode::NOT_MODIFIED.into_response();
            if let Some(l) = parts.headers.get("link") {
                r.headers_mut().insert("link", l.clone());
            }
            response = r;
            charged = false;
        } else {
            response = Response::from_parts(parts, axum::body::Body::from(bytes));
        }
        if let Ok(v) = HeaderValue::from_str(&etag) {
            response.headers_mut().insert("etag", v);
        }
    }
    let mut st = lock(&state);
    if let Some(t) = &token {
        if let Some((remaining, reset)) = st.rate.get(t).copied() {
            // Every answer to an authenticated request costs a point except
            // a 304 (above); a spent limit stays at 0.
            let remaining = if charged && caller.is_some() {
                remaining.saturating_sub(1)
            } else {
                remaining
            };
            st.rate.insert(t.clone(), (remaining, reset));
            let h = response.headers_mut();
            h.insert("x-ratelimit-limit", HeaderValue::from(RATE_LIMIT));
            h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
            h.insert("x-ratelimit-used", HeaderValue::from(RATE_LIMIT - remaining));
            h.insert("x-ratelimit-reset", HeaderValue::from(reset));
            h.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
        }
    }
    let status = response.status().as_u16();
    st.log.push(Logged {
        method,
        path: rel,
        status,
        charged: charged && status != 304,
    });
    response
}

/// Endpoints that take a JWT rather than a token: `/app...` and
/// `GET /orgs/{org}/installation` ("You must use a JWT to access this
/// endpoint", https://docs.github.com/en/rest/apps/apps).
fn jwt_endpoint(rel: &str) -> bool {
    let path = rel.split('?').next().unwrap_or_default();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    parts.first() == Some(&"app") || (parts.len() == 3 && parts[0] == "orgs" && parts[2] == "installation")
}

/// GitHub's answers to a JWT it refuses (401). The wording is what
/// GitHub sends, as quoted in client bug reports:
/// https://github.com/backstage/backstage/issues/12887 (undecodable or
/// badly signed), https://github.com/octokit/auth-app.js/issues/698 (`exp`
/// too far ahead), https://github.com/sigmavirus24/github3.py/issues/1050
/// (`exp` missing or past).
pub const JWT_UNDECODABLE: &str = "A JSON web token could not be decoded";
pub const JWT_EXP_TOO_FAR: &str = "'Expiration time' claim ('exp') is too far in the future";
pub const JWT_EXP_INVALID: &str =
    "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";
pub const JWT_IAT_INVALID: &str =
    "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued";

/// Checks a GitHub App JWT the way GitHub documents it
/// (https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-json-web-token-jwt-for-a-github-app):
/// RS256, signed with the App's private key; `iss` the App's id (a number
/// or its string); `iat` not in the future (the docs advise 60 s in the
/// past against clock drift, so up to 60 s ahead is forgiven here); `exp`
/// in the future and "no more than 10 minutes into the future". Returns the
/// App's id and slug.
fn verify_jwt(st: &State, token: &str, now: i64) -> Result<(u64, String), String> {
    use octocrab::jsonwebtoken as jwt;
    let undecodable = || JWT_UNDECODABLE.to_string();
    let header = jwt::decode_header(token).map_err(|_| undecodable())?;
    if header.alg != jwt::Algorithm::RS256 {
        return Err(undecodable());
    }
    let claims = jwt::dangerous::insecure_decode::<Value>(token)
        .map_err(|_| undecodable())?
        .claims;
    let iss = match &claims["iss"] {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    let Some((app_id, app)) = iss.and_then(|id| st.apps.get(&id).map(|a| (id, a))) else {
        return Err(undecodable());
    };
    let key = jwt::DecodingKey::from_rsa_pem(&app.public_pem).map_err(|_| undecodable())?;
    let mut validation = jwt::Validation::new(jwt::Algorithm::RS256);
    // The claims are judged below with GitHub's messages.
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    jwt::decode::<Value>(token, &key, &validation).map_err(|_| undecodable())?;
    let Some(exp) = claims["exp"].as_i64() else {
        return Err(JWT_EXP_INVALID.into());
    };
    let Some(iat) = claims["iat"].as_i64() else {
        return Err(JWT_IAT_INVALID.into());
    };
    if iat > now + 60 {
        return Err(JWT_IAT_INVALID.into());
    }
    if exp <= now {
        return Err(JWT_EXP_INVALID.into());
    }
    if exp > now + 600 || exp - iat > 600 {
        return Err(JWT_EXP_TOO_FAR.into());
    }
    Ok((app_id, app.slug.clone()))
}

/// A user token, or an installation token that has not expired (an
/// expired one is "Bad credentials", like any unknown token).
fn caller_for_token(st: &State, token: &str) -> Option<Caller> {
    if let Some(login) = st.tokens.get(token) {
        return Some(Caller::user(login.clone()));
    }
    let t = st.install_tokens.get(token)?;
    if t.expires_at <= chrono::Utc::now() {
        return None;
    }
    let inst = st.installations.get(&t.installation)?;
    let slug = st.apps.get(&inst.app_id).map(|a| a.slug.clone()).unwrap_or_default();
    Some(Caller {
        login: format!("{slug}[bot]"),
        installation: Some(t.installation),
        app: None,
    })
}

/// The permissions the simulator grants every installation.
fn installation_permissions() -> Value {
    json!({"members": "write", "organization_administration": "write", "metadata": "read"})
}

/// An installation as `GET /orgs/{org}/installation` and
/// `GET /app/installations` show it
/// (https://docs.github.com/en/rest/apps/apps#get-an-organization-installation-for-the-authenticated-app).
fn installation_json(st: &State, id: u64, i: &SimInstallation) -> Value {
    let slug = st.apps.get(&i.app_id).map(|a| a.slug.clone()).unwrap_or_default();
    json!({
        "id": id,
        "account": {"login": i.org, "id": i.org_id, "type": "Organization"},
        "app_id": i.app_id,
        "app_slug": slug,
        "target_id": i.org_id,
        "target_type": "Organization",
        "permissions": installation_permissions(),
        "repository_selection": "all",
        "events": [],
    })
}

async fn get_app(Extension(c): Extension<Caller>, AxState(s): AxState<Shared>) -> Response {
    let st = lock(&s);
    let Some((id, app)) = c.app.and_then(|id| st.apps.get(&id).map(|a| (id, a))) else {
        return error(StatusCode::UNAUTHORIZED, JWT_UNDECODABLE);
    };
    Json(json!({"id": id, "slug": app.slug, "name": app.slug, "owner": null,
        "permissions": installation_permissions(), "events": []}))
    .into_response()
}

async fn list_app_installations(
    Extension(c): Extension<Caller>,
    Query(q): Q,
    headers: HeaderMap,
    AxState(s): AxState<Shared>,
) -> Response {
    let st = lock(&s);
    let items = st
        .installations
        .iter()
        .filter(|(_, i)| Some(i.app_id) == c.app)
        .map(|(id, i)| installation_json(&st, *id, i))
        .collect();
    paged(items, &q, &headers, &st.prefix, "/app/installations")
}

/// 404 when the App is not installed on the org.
async fn get_org_installation(
    UrlPath(org): UrlPath<String>,
    Extension(c): Extension<Caller>,
    AxState(s): AxState<Shared>,
) -> Response {
    let st = lock(&s);
    st.installations
        .iter()
        .find(|(_, i)| Some(i.app_id) == c.app && i.org.eq_ignore_ascii_case(&org))
        .map(|(id, i)| Json(installation_json(&st, *id, i)).into_response())
        .unwrap_or_else(not_found)
}

/// `201 {token, expires_at, permissions, repository_selection}`; an
/// installation of another App (or none) is `404`
/// (https://docs.github.com/en/rest/apps/apps#create-an-installation-access-token-for-an-app).
/// Tokens last an hour unless [`Sim::set_installation_token_lifetime`]
/// says otherwise.
async fn create_access_token(
    UrlPath(id): UrlPath<String>,
    Extension(c): Extension<Caller>,
    AxState(s): AxState<Shared>,
) -> Response {
    let mut st = lock(&s);
    let Some(id) = id
        .parse::<u64>()
        .ok()
        .filter(|id| st.installations.get(id).is_some_and(|i| Some(i.app_id) == c.app))
    else {
        return not_found();
    };
    let serial = st.id();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (serial, id, chrono::Utc::now().timestamp_nanos_opt()).hash(&mut h);
    let token = format!("ghs_{:016x}{:020}", h.finish(), serial);
    let lifetime = st.token_lifetime.unwrap_or_else(|| chrono::Duration::hours(1));
    let expires_at = chrono::Utc::now() + lifetime;
    st.install_tokens.insert(
        token.clone(),
        InstallToken {
            installation: id,
            expires_at,
        },
    );
    (
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "permissions": installation_permissions(),
            "repository_selection": "all",
        })),
    )
        .into_response()
}

type Q = Query<HashMap<String, String>>;

async fn get_user(Extension(c): Extension<Caller>, AxState(s): AxState<Shared>) -> Response {
    // "This endpoint works with … user access tokens", not installation
    // tokens (https://docs.github.com/en/rest/users/users#get-the-authenticated-user).
    if c.installation.is_some() {
        return error(StatusCode::FORBIDDEN, NOT_ACCESSIBLE);
    }
    let st = lock(&s);
    Json(user_json(&st, &c.login)).into_response()
}

async fn get_org(UrlPath(org): UrlPath<String>, AxState(s): AxState<Shared>) -> Response {
    org_response(&lock(&s), &org)
}

fn org_response(st: &State, org: &str) -> Response {
    let Some(o) = st.orgs.get(&org.to_lowercase()) else {
        return not_found();
    };
    let mut v = json!({"login": o.login, "id": o.id, "type": "Organization", "url": format!("/orgs/{}", o.login)});
    for (k, val) in &o.settings {
        v[k] = val.clone();
    }
    Json(v).into_response()
}

async fn patch_org(
    UrlPath(org): UrlPath<String>,
    Extension(c): Extension<Caller>,
    AxState(s): AxState<Shared>,
    Json(body): Json<Value>,
) -> Response {
    let mut st = lock(&s);
    if let Some(refusal) = refuse_unless_admin(&st, &org, &c) {
        return refusal;
    }
    let o = st.org_mut(&org);
    if let Some(m) = body.as_object() {
        for (k, v) in m {
            o.settings.insert(k.clone(), v.clone());
        }
    }
    org_response(&st, &org)
}

async fn list_members(
    UrlPath(org): UrlPath<String>,
    Query(q): Q,
    headers: HeaderMap,
    AxState(s): AxState<Shared>,
) -> Response {
    let st = lock(&s);
    let Some(o) = st.orgs.get(&org.to_lowercase()) else {
        return not_found();
    };
    // role: all (default), admin, member
    // (https://docs.github.com/en/rest/orgs/members#list-organization-members).
    let role = q.get("role").map(String::as_str).unwrap_or("all");
    if !matches!(role, "all" | "admin" | "member") {
        return validation("Member", "role", "role must be one of all, admin, member");
    }
    let items: Vec<Value> = o
        .members
        .values()
        .filter(|(_, r)| role == "all" || r == role)
        .map(|(l, _)| user_json(&st, l))
        .collect();
    paged(items, &q, &headers, &st.prefix, &format!("/orgs/{org}/members"))
}

async fn get_membership(UrlPath((org, user)): UrlPath<(String, String)>, AxState(s): AxState<Shared>) -> Response {
    membership_response(&lock(&s), &org, &user)
}

fn membership_response(st: &State, org: &str, user: &str) -> Response {
    let Some(o) = st.orgs.get(&org.to_lowercase()) else {
        return not_found();
    };
    if let Some((login, role)) = o.members.get(&user.to_lowercase()) {
        return Json(json!({"state": "active", "role": role, "user": user_json(st, login)})).into_response();
    }
    if let Some(i) = o
        .invitations
        .iter()
        .find(|i| i.failed.is_none() && i.login.eq_ignore_ascii_case(user))
    {
        let role = if i.role == "admin" { "admin" } else { "member" };
        return Json(json!({"state": "pending", "role": role, "user": user_json(st, &i.login)})).into_response();
    }
    not_found()
}

async fn set_membership(
    UrlPath((org, user)): UrlPath<(String, String)>,
    Extension(c): Extension<Caller>,
    AxState(s): AxState<Shared>,
    Json(body): Json<Value>,
) -> Response {
    let mut st = lock(&s);
    if let Some(refusal) = refuse_unless_admin(&st, &org, &c) {
        return refusal;
    }
    // https://docs.github.com/en/rest/orgs/members#set-organization-membership-for-a-user:
    // role admin|member, default member; an unknown user is 404.
    let role = body["role"].as_str().unwrap_or("member").to_string();
    if role != "admin" && role != "member" {
        return validation("Membership", "role", "role is not included in the list");
    }
    let Some((login, _)) = st.users.get(&user.to_lowercase()).cloned() else {
        return not_found();
    };
    let id = st.id();
    let o = st.org_mut(&org);
    if let Some(m) = o.members.get_mut(&login.to_lowercase()) {
        m.1 = role.clone();
        return membership_response(&st, &org, &user);
    }
    // A non-member is invited: the membership is `pending` until accepted.
    let open = o
        .invitations
        .iter()
        .position(|i| i.failed.is_none() && i.login.eq_ignore_ascii_case(&login));
    let teams = open.map(|p| o.invitations.remove(p).teams).unwrap_or_default();
    o.invitations.push(Invitation {
        id,
        login: login.clone(),
        role: if role == "admin" {
            "admin".into()
        } else {
            "direct_member".into()
        },
        created_at: chrono::Utc::now(),
        failed: None,
        teams,
    });
    membership_response(&st, &org, &user)
}

async fn remove_membership(
    UrlPath((org, user)): UrlPath<(String, String)>,
    Extension(c): Extension<Caller>,
    AxState(s): AxState<Shared>,
) -> Response {
    let mut st = lock(&s);
    if let Some(refusal) = refuse_unless_admin(&st, &org, &c) {
        return refusal;
    }
    let o = st.org_mut(&org);
    let key = user.to_lowercase();
    let had = o.members.remove(&key).is_some();
    let invited = o.invitations.len();
    o.invitations
        .retain(|i| !(i.failed.is_none() && i.login.eq_ignore_ascii_case(&user)));
    if !had && invited == o.invitations.len() {
        return not_found();
    }
    // Leaving the org leaves its teams too.
    for t in o.teams.values_mut() {
        t.members.remove(&key);
    }
    StatusCode::NO_CONTENT.into_response()
}

fn invitation_json(i: &Invitation) -> Value {
    let mut v = json!({
        "id": i.id, "login": i.login, "email": null, "role": i.role,
        "created_at": i.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "inviter": {"login": "plumb-bot"}, "team_count": 0,
    });
    if let Some((at, reason)) = &i.failed {
        v["failed_at"] = json!(at);
        v["failed_reason"] = json!(reason);
    }
    v
}

async fn list_invitations(
    UrlPath(org): UrlPath<String>,
    Query(q): Q,
    headers: HeaderMap,
    Extension(c): Extension<Caller>,
    AxState(s): AxState<Shared>,
) -> Response {
    invitations(org, q, headers, c, s, false).await
}

async fn list_failed(
    UrlPath(org): UrlPath<String>,
    Query(q): Q,
    headers: HeaderMap,
    Extension(c): Extension<Caller>,
    AxState(s): AxState<Shared>,
) -> Response {
    invitations(org, q, headers, c, s, true).await
}

async fn invitations(
    org: String,
    q: HashMap<String, String>,
    headers: HeaderMap,
    c: Caller,
    s: Shared,
    failed: bool,
) -> Response {
    let st = lock(&s);
    let Some(o) = st.orgs.get(&org.to_lowercase()) else {
        return not_found();
    };
    if let Some(denied) = deny(&st, &org, &c) {
        return denied;
    }
    let items = o
        .invitations
        .iter()
        .filter(|i| i.failed.is_some() == failed)
        .map(invitation_json)
        .collect();
    let path = if failed { "failed_invitations" } else { "invitations" };
    paged(items, &q, &headers, &st.prefix, &format!("/orgs/{org}/{path}"))
}

async fn list_outside(
    UrlPath(org): UrlPath<String>,
    Query(q): Q,
    headers: HeaderMap,
    Extension(c): Extension<Caller>,
    AxState(s): AxState<Shared>,
) -> Response {
    let st = lock(&s);
    let Some(o) = st.orgs.get(&org.to_lowercase()) else {
        return not_found();
    };
    if let Some(denied) = deny(&st, &org, &c) {
        return denied;
    }
    let items = o.outside.iter().map(|l| user_json(&st, l)).collect();
    paged(
        items,
        &q,
        &headers,
        &st.prefix,
        &format!("/orgs/{org}/outside_collaborators"),
    )
}

fn team_json(o: &Org, t: &Team) -> Value {
    let parent = t.parent.as_ref().and_then(|p| o.teams.get(p)).map(
        |p| json!({"id": p.id, "name": p.name, "slug": p.slug, "description": p.description, "privacy": p.privacy}),
    );
    json!({
        "id": t.id, "name": t.name, "slug": t.slug, "description": t.description,
        "privacy": t.privacy, "permission": "pull", "parent": parent,
    })
}

async fn list_teams(
    UrlPath(org): UrlPath<String>,
    Query(q): Q,
    headers: HeaderMap,
    AxState(s): AxState<Shared>,
) -> Response {
    let st = lock(&s);
    let Some(o) = st.orgs.get(&org.to_lowercase()) else {
        return not_found();
    };
    let items = o.teams.values().map(|t| team_json(o, t)).collect();
    paged(items, &q, &headers, &st.prefix, &format!("/orgs/{org}/teams"))
}

async fn get_team(UrlPath((org, slug)): UrlPath<(String, String)>, AxState(s): AxState<Shared>) -> Response {
    let st = lock(&s);
    let Some(o) = st.orgs.get(&org.to_lowercase()) else {
        return not_found();
    };
    match o.teams.get(&slug.to_lowercase()) {
        Some(t) => Json(team_json(o, t)).into_response(),
        None => not_found(),
    }
}

fn parent_slug(o: &Org, body: &Value) -> Result<Option<String>, Box<Response>> {
    match body.get("parent_team_id") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let id = v.as_u64().unwrap_or_default();
            o.teams
                .values()
                .find(|t| t.id == id)
                .map(|t| Some(t.slug.clone()))
                .ok_or_else(|| Box::new(validation("Team", "parent_team_id", "Parent team must exist")))
        }
    }
}

async fn create_team(
    UrlPath(org): UrlPath<String>,
    Extension(c): Extension<Caller>,
    AxState(s): AxState<Shared>,
    Json(body): Json<Value>,
) -> Response {
    let mut st = lock(&s);
    if let Some(refusal) = refuse_unless_admin(&st, &org, &c) {
        return refusal;
    }
    let Some(name) = body["name"].as_str().map(str::to_string) else {
        return validation("Team", "name", "name is missing");
    };
    let slug = crate::desired::slugify(&name);
    let id = st.id();
    let (me, _) = st.user(&c.login);
    let o = st.org_mut(&org);
    if o.teams.contains_key(&slug) {
        return validation("Team", "name", "Name must be unique for this org");
    }
    let parent = match parent_slug(o, &body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    // https://docs.github.com/en/rest/teams/teams#create-a-team: privacy
    // "Default: secret"; "Default for child team: closed".
    let privacy = body["privacy"]
        .as_str()
        .unwrap_or(if parent.is_some() { "closed" } else { "secret" })
        .to_string();
    if privacy == "secret" && parent.is_some() {
        return validation("Team", "privacy", "A nested team cannot be secret");
    }
    let mut members = BTreeMap::new();
    // "When you create a new team, you automatically become a team maintainer".
    members.insert(me.to_lowercase(), (me, "maintainer".to_string()));
    let team = Team {
        id,
        name,
        slug: slug.clone(),
        description: body["description"].as_str().unwrap_or_default().to_string(),
        privacy,
        parent,
        members,
        repos: BTreeMap::new(),
    };
    o.teams.insert(slug.clone(), team);
    let t = &o.teams[&slug];
    (StatusCode::CREATED, Json(team_json(o, t))).into_response()
}

async fn update_team(
    UrlPath((org, slug)): UrlPath<(String, String)>,
    Extension(c): Extension<Caller>,
    AxState(s): AxState<Shared>,
    Json(body): Json<Value>,
) -> Response {
    let mut st = lock(&s);
    if let Some(refusal) = refuse_unless_admin(&st, &org, &c) {
        return refusal;
    }
    let o = st.org_mut(&org);
    let slug = slug.to_lowercase();
    if !o.teams.contains_key(&slug) {
        return not_found();
    }
    let parent = if body.get("parent_team_id").is_some() {
        match parent_slug(o, &body) {
            Ok(p) => Some(p),
            Err(r) => return *r,
        }
    } else {
        None
    };
    let Some(mut team) = o.teams.remove(&slug) else {
        return not_found();
    };
    if let Some(n) = body["name"].as_str() {
        // Renaming changes the slug (GitHub generates it from the name).
        let new_slug = crate::desired::slugify(n);
        if new_slug != slug && o.teams.contains_key(&new_slug) {
            o.teams.insert(slug, team);
            return validation("Team", "name", "Name must be unique for this org");
        }
        team.name = n.to_string();
        team.slug = new_slug.clone();
        for t in o.teams.values_mut() {
            if t.parent.as_deref() == Some(slug.as_str()) {
                t.parent = Some(new_slug.clone());
            }
        }
    }
    if let Some(d) = body["description"].as_str() {
        team.description = d.to_string();
    }
    if let Some(p) = body["privacy"].as_str() {
        team.privacy = p.to_string();
    }
    if let Some(p) = parent {
        team.parent = p;
    }
    let new = team.slug.clone();
    o.teams.insert(new.clone(), team);
    Json(team_json(o, &o.teams[&new])).into_response()
}

async fn delete_team(
    UrlPath((org, slug)): UrlPath<(String, String)>,
    Extension(c): Extension<Caller>,
    AxState(s): AxState<Shared>,
) -> Response {
    let mut st = lock(&s);
    if let Some(refusal) = refuse_unless_admin(&st, &org, &c) {
        return refusal;
    }
    let o = st.org_mut(&org);
    if !o.teams.contains_key(&slug.to_lowercase()) {
        return not_found();
    }
    // "If you are an organization owner, deleting a parent team will delete
    // all of its child teams as well" (https://docs.github.com/en/rest/teams/teams#delete-a-team).
    let mut gone = vec![slug.to_lowercase()];
    let mut i = 0;
    while i < gone.len() {
        let kids: Vec<String> = o
            .teams
            .values()
            .filter(|t| t.parent.as_deref() == Some(gone[i].as_str()))
            .map(|t| t.slug.clone())
            .collect();
        gone.extend(kids);
        i += 1;
    }
    for g in gone {
        o.teams.remove(&g);
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn list_team_members(
    UrlPath((org, slug)): UrlPath<(String, String)>,
    Query(q): Q,
    headers: HeaderMap,
    AxState(s): AxState<Shared>,
) -> Response {
    let st = lock(&s);
    let Some(o) = st.orgs.get(&org.to_lowercase()) else {
        return not_found();
    };
    let slug = slug.to_lowercase();
    if !o.teams.contains_key(&slug) {
        return not_found();
    }
    let role = q.get("role").map(String::as_str).unwrap_or("all");
    // "Team members will include the members of child teams"
    // (https://docs.github.com/en/rest/teams/members#list-team-members).
    let mut teams = vec![slug.clone()];
    let mut i = 0;
    while i < teams.len() {
        let kids: Vec<String> = o
            .teams
            .values()
            .filter(|t| t.parent.as_deref() == Some(teams[i].as_str()))
            .map(|t| t.slug.clone())
            .collect();
        teams.extend(kids);
        i += 1;
    }
    let mut members: BTreeMap<String, (String, String)> = BTreeMap::new();
    for t in &teams {
        for (k, (login, r)) in &o.teams[t].members {
            // "The role for organization owners is set to maintainer"
            // (https://docs.github.com/en/rest/teams/members#get-team-membership-for-a-user).
            let owner = o.members.get(k).is_some_and(|(_, role)| role == "admin");
            let r = if owner { "maintainer".to_string() } else { r.clone() };
            let e = members.entry(k.clone()).or_insert((login.clone(), r.clone()));
            if t == &slug {
                *e = (login.clone(), r);
            }
        }
    }
    let items = members
        .values()
        .filter(|(_, r)| role == "all" || r == role)
        .map(|(l, _)| user_json(&st, l))
        .collect();
    paged(
        items,
        &q,
        &headers,
        &st.prefix,
        &format!("/orgs/{org}/teams/{slug}/members"),
    )
}

async fn set_team_membership(
    UrlPath((org, slug, user)): UrlPath<(String, String, String)>,
    Extension(c): Extension<Caller>,
    AxState(s): AxState<Shared>,
    Json(body): Json<Value>,
) -> Response {
    let mut st = lock(&s);
    if let Some(refusal) = refuse_unless_admin(&st, &org, &c) {
        return refusal;
    }
    let role = body["role"].as_str().unwrap_or("member").to_string();
    if role != "member" && role != "maintainer" {
        return validation("TeamMember", "role", "role is not included in the list");
    }
    let Some((login, _)) = st.users.get(&user.to_lowercase()).cloned() else {
        return not_found();
    };
    let id = st.id();
    let o = st.org_mut(&org);
    let Some(t) = o.teams.get_mut(&slug.to_lowercase()) else {
        return not_found();
    };
    let member = o.members.contains_key(&login.to_lowercase());
    if member {
        t.members.insert(login.to_lowercase(), (login.clone(), role.clone()));
        return Json(json!({"state": "active", "role": role})).into_response();
    }
    // https://docs.github.com/en/rest/teams/members#add-or-update-team-membership-for-a-user:
    // a non-member is invited to the org; the membership stays pending.
    let team = (slug.to_lowercase(), role.clone());
    match o
        .invitations
        .iter_mut()
        .find(|i| i.failed.is_none() && i.login.eq_ignore_ascii_case(&login))
    {
        Some(i) => i.teams.push(team),
        None => o.invitations.push(Invitation {
            id,
            login,
            role: "direct_member".into(),
            created_at: chrono::Utc::now(),
            failed: None,
            teams: vec![team],
        }),
    }
    Json(json!({"state": "pending", "role": role})).into_response()
}

async fn remove_team_membership(
    UrlPath((org, slug, user)): UrlPath<(String, String, String)>,
    Extension(c): Extension<Caller>,
    AxState(s): AxState<Shared>,
) -> Response {
    let mut st = lock(&s);
    if let Some(refusal) = refuse_unless_admin(&st, &org, &c) {
        return refusal;
    }
    let o = st.org_mut(&org);
    let Some(t) = o.teams.get_mut(&slug.to_lowercase()) else {
        return not_found();
    };
    if t.members.remove(&user.to_lowercase()).is_none() {
        return not_found();
    }
    StatusCode::NO_CONTENT.into_response()
}

fn permissions(role: &str) -> Value {
    let rank = ["read", "triage", "write", "maintain", "admin"]
        .iter()
        .position(|r| *r == role)
        .unwrap_or(0);
    json!({"pull": true, "triage": rank >= 1, "push": rank >= 2, "maintain": rank >= 3, "admin": rank >= 4})
}

async fn list_team_repos(
    UrlPath((org, slug)): UrlPath<(String, String)>,
    Query(q): Q,
    headers: HeaderMap,
    AxState(s): AxState<Shared>,
) -> Response {
    let st = lock(&s);
    let Some(o) = st.orgs.get(&org.to_lowercase()) else {
        return not_found();
    };
    let Some(t) = o.teams.get(&slug.to_lowercase()) else {
        return not_found();
    };
    let items = t
        .repos
        .iter()
        .map(|(name, role)| {
            json!({"name": name, "full_name": format!("{}/{name}", o.login), "permissions": permissions(role), "role_name": role})
        })
        .collect();
    paged(
        items,
        &q,
        &headers,
        &st.prefix,
        &format!("/orgs/{org}/teams/{slug}/repos"),
    )
}

async fn set_team_repo(
    UrlPath((org, slug, _owner, repo)): UrlPath<(String, String, String, String)>,
    Extension(c): Extension<Caller>,
    AxState(s): AxState<Shared>,
    body: Option<Json<Value>>,
) -> Response {
    let mut st = lock(&s);
    if let Some(refusal) = refuse_unless_admin(&st, &org, &c) {
        return refusal;
    }
    // https://docs.github.com/en/rest/teams/teams#add-or-update-team-repository-permissions:
    // pull, triage, push, maintain, admin (or a custom role); default push.
    let p = body
        .and_then(|Json(b)| b["permission"].as_str().map(str::to_string))
        .unwrap_or_else(|| "push".into());
    let role = match p.as_str() {
        "pull" | "read" => "read",
        "push" | "write" => "write",
        "triage" => "triage",
        "maintain" => "maintain",
        "admin" => "admin",
        _ => return validation("Team", "permission", "permission is not included in the list"),
    };
    let o = st.org_mut(&org);
    let Some(t) = o.teams.get_mut(&slug.to_lowercase()) else {
        return not_found();
    };
    t.repos.insert(repo, role.to_string());
    StatusCode::NO_CONTENT.into_response()
}

async fn remove_team_repo(
    UrlPath((org, slug, _owner, repo)): UrlPath<(String, String, String, String)>,
    Extension(c): Extension<Caller>,
    AxState(s): AxState<Shared>,
) -> Response {
    let mut st = lock(&s);
    if let Some(refusal) = refuse_unless_admin(&st, &org, &c) {
        return refusal;
    }
    let o = st.org_mut(&org);
    let Some(t) = o.teams.get_mut(&slug.to_lowercase()) else {
        return not_found();
    };
    t.repos.remove(&repo);
    StatusCode::NO_CONTENT.into_response()
}

/// The running simulator. Dropping it stops the server.
pub struct Sim {
    state: Shared,
    server: LoopbackServer,
    prefix: String,
}

impl Sim {
    /// Starts a simulator on 127.0.0.1 with a free port, on the current
    /// Tokio runtime.
    pub async fn start(options: SimOptions) -> std::io::Result<Sim> {
        let prefix = loopback::sub_path(options.path_prefix.as_deref());
        let mut state = State {
            prefix: prefix.clone(),
            ..Default::default()
        };
        state.owner = options.tokens.first().map(|(_, login)| login.clone());
        for (token, login) in options.tokens {
            state.user(&login);
            state.tokens.insert(token, login);
        }
        let state: Shared = Arc::new(Mutex::new(state));
        let api = Router::new()
            .route("/user", get(get_user))
            .route("/app", get(get_app))
            .route("/app/installations", get(list_app_installations))
            .route(
                "/app/installations/{installation_id}/access_tokens",
                axum::routing::post(create_access_token),
            )
            .route("/orgs/{org}/installation", get(get_org_installation))
            .route("/orgs/{org}", get(get_org).patch(patch_org))
            .route("/orgs/{org}/members", get(list_members))
            .route(
                "/orgs/{org}/memberships/{user}",
                get(get_membership).put(set_membership).delete(remove_membership),
            )
            .route("/orgs/{org}/invitations", get(list_invitations))
            .route("/orgs/{org}/failed_invitations", get(list_failed))
            .route("/orgs/{org}/outside_collaborators", get(list_outside))
            .route("/orgs/{org}/teams", get(list_teams).post(create_team))
            .route(
                "/orgs/{org}/teams/{slug}",
                get(get_team).patch(update_team).delete(delete_team),
            )
            .route("/orgs/{org}/teams/{slug}/members", get(list_team_members))
            .route(
                "/orgs/{org}/teams/{slug}/memberships/{user}",
                put(set_team_membership).delete(remove_team_membership),
            )
            .route("/orgs/{org}/teams/{slug}/repos", get(list_team_repos))
            .route(
                "/orgs/{org}/teams/{slug}/repos/{owner}/{repo}",
                put(set_team_repo).delete(remove_team_repo),
            )
            .fallback(|| async { not_found() })
            .layer(middleware::from_fn_with_state(state.clone(), gate))
            .with_state(state.clone());
        let server = LoopbackServer::start("github", loopback::mounted(&prefix, api)).await?;
        Ok(Sim { state, server, prefix })
    }

    /// The base URL for a target's `connection.api_url`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.server.addr(), self.prefix)
    }

    /// Loads a directory of org files (either peribolos layout) as live
    /// state; every login becomes a GitHub user, and the first token's user
    /// becomes an owner of each org (so that it can administer it). Returns
    /// the number of orgs.
    pub fn seed_dir(&self, dir: &Path) -> Result<usize, ProviderError> {
        let (orgs, _) = crate::desired::read(dir, dir)?;
        let mut st = lock(&self.state);
        let owner = st.owner.clone();
        for cfg in &orgs {
            let mut users = Vec::new();
            for e in cfg.admins.iter().chain(&cfg.members) {
                users.push(st.user(&e.login).0);
            }
            for t in &cfg.teams {
                for e in t.maintainers.iter().chain(&t.members) {
                    st.user(&e.login);
                }
            }
            let mut team_ids = Vec::new();
            for _ in &cfg.teams {
                team_ids.push(st.id());
            }
            let o = st.org_mut(&cfg.org);
            o.settings = cfg.settings.clone();
            for e in &cfg.admins {
                o.members
                    .insert(e.login.to_lowercase(), (e.login.clone(), "admin".into()));
            }
            for e in &cfg.members {
                o.members
                    .insert(e.login.to_lowercase(), (e.login.clone(), "member".into()));
            }
            for (t, id) in cfg.teams.iter().zip(team_ids) {
                let mut members = BTreeMap::new();
                for e in &t.members {
                    members.insert(e.login.to_lowercase(), (e.login.clone(), "member".to_string()));
                }
                for e in &t.maintainers {
                    members.insert(e.login.to_lowercase(), (e.login.clone(), "maintainer".to_string()));
                }
                o.teams.insert(
                    t.slug.clone(),
                    Team {
                        id,
                        name: t.name.clone(),
                        slug: t.slug.clone(),
                        description: t.description.clone().unwrap_or_default(),
                        privacy: t.privacy.clone().unwrap_or_else(|| "closed".into()),
                        parent: t.parent.as_deref().map(crate::desired::slugify),
                        members,
                        repos: t
                            .repos
                            .iter()
                            .map(|(r, p)| (r.clone(), crate::normalize::permission(p).to_string()))
                            .collect(),
                    },
                );
            }
            if let Some(bot) = &owner {
                o.members
                    .entry(bot.to_lowercase())
                    .or_insert_with(|| (bot.clone(), "admin".into()));
            }
        }
        Ok(orgs.len())
    }

    /// Creates an empty org whose owner is `owner`.
    pub fn add_org(&self, org: &str, owner: &str) {
        let mut st = lock(&self.state);
        let (owner, _) = st.user(owner);
        st.org_mut(org)
            .members
            .insert(owner.to_lowercase(), (owner, "admin".into()));
    }

    /// Makes `login` a GitHub user (so that it can be invited).
    pub fn add_user(&self, login: &str) {
        lock(&self.state).user(login);
    }

    /// Adds or changes a member by hand (role `admin` or `member`).
    pub fn set_member(&self, org: &str, login: &str, role: &str) {
        let mut st = lock(&self.state);
        let (login, _) = st.user(login);
        st.org_mut(org)
            .members
            .insert(login.to_lowercase(), (login, role.into()));
    }

    /// Removes a member by hand; like GitHub, they leave the org's teams.
    pub fn remove_member(&self, org: &str, login: &str) -> bool {
        let mut st = lock(&self.state);
        let o = st.org_mut(org);
        for t in o.teams.values_mut() {
            t.members.remove(&login.to_lowercase());
        }
        o.members.remove(&login.to_lowercase()).is_some()
    }

    /// The member's role, `pending` for an open invitation.
    pub fn member_role(&self, org: &str, login: &str) -> Option<String> {
        let st = lock(&self.state);
        let o = st.orgs.get(&org.to_lowercase())?;
        if let Some((_, r)) = o.members.get(&login.to_lowercase()) {
            return Some(r.clone());
        }
        o.invitations
            .iter()
            .any(|i| i.failed.is_none() && i.login.eq_ignore_ascii_case(login))
            .then(|| "pending".to_string())
    }

    pub fn member_count(&self, org: &str) -> usize {
        lock(&self.state)
            .orgs
            .get(&org.to_lowercase())
            .map(|o| o.members.len())
            .unwrap_or_default()
    }

    /// Adds a team by hand (a person in the UI).
    pub fn add_team(&self, org: &str, name: &str, parent: Option<&str>) -> String {
        let mut st = lock(&self.state);
        let id = st.id();
        let slug = crate::desired::slugify(name);
        st.org_mut(org).teams.insert(
            slug.clone(),
            Team {
                id,
                name: name.into(),
                slug: slug.clone(),
                description: String::new(),
                privacy: "closed".into(),
                parent: parent.map(str::to_string),
                members: BTreeMap::new(),
                repos: BTreeMap::new(),
            },
        );
        slug
    }

    /// Team slugs of `org`.
    pub fn teams(&self, org: &str) -> Vec<String> {
        let st = lock(&self.state);
        st.orgs
            .get(&org.to_lowercase())
            .map(|o| o.teams.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Immediate members of a team: lower login → role.
    pub fn team_members(&self, org: &str, slug: &str) -> BTreeMap<String, String> {
        let st = lock(&self.state);
        st.orgs
            .get(&org.to_lowercase())
            .and_then(|o| o.teams.get(slug))
            .map(|t| t.members.iter().map(|(k, (_, r))| (k.clone(), r.clone())).collect())
            .unwrap_or_default()
    }

    pub fn set_team_member(&self, org: &str, slug: &str, login: &str, role: &str) -> bool {
        let mut st = lock(&self.state);
        let (login, _) = st.user(login);
        match st.org_mut(org).teams.get_mut(slug) {
            Some(t) => {
                t.members.insert(login.to_lowercase(), (login, role.into()));
                true
            }
            None => false,
        }
    }

    pub fn remove_team_member(&self, org: &str, slug: &str, login: &str) -> bool {
        let mut st = lock(&self.state);
        st.org_mut(org)
            .teams
            .get_mut(slug)
            .is_some_and(|t| t.members.remove(&login.to_lowercase()).is_some())
    }

    /// Sets a team's role on a repo (`read` … `admin`); `None` removes it.
    pub fn set_team_repo(&self, org: &str, slug: &str, repo: &str, role: Option<&str>) -> bool {
        let mut st = lock(&self.state);
        match st.org_mut(org).teams.get_mut(slug) {
            Some(t) => {
                match role {
                    Some(r) => t.repos.insert(repo.into(), r.into()),
                    None => t.repos.remove(repo),
                };
                true
            }
            None => false,
        }
    }

    /// Repos of a team: name → role.
    pub fn team_repos(&self, org: &str, slug: &str) -> BTreeMap<String, String> {
        let st = lock(&self.state);
        st.orgs
            .get(&org.to_lowercase())
            .and_then(|o| o.teams.get(slug))
            .map(|t| t.repos.clone())
            .unwrap_or_default()
    }

    /// Changes one org setting by hand.
    pub fn set_setting(&self, org: &str, key: &str, value: Value) {
        lock(&self.state).org_mut(org).settings.insert(key.into(), value);
    }

    /// A pending invitation sent `age_days` ago (7 or more: expired).
    pub fn invite(&self, org: &str, login: &str, role: &str, age_days: i64) {
        let mut st = lock(&self.state);
        let (login, _) = st.user(login);
        let id = st.id();
        st.org_mut(org).invitations.push(Invitation {
            id,
            login,
            role: if role == "admin" {
                "admin".into()
            } else {
                "direct_member".into()
            },
            created_at: chrono::Utc::now() - chrono::Duration::days(age_days),
            failed: None,
            teams: Vec::new(),
        });
    }

    /// Turns `login`'s pending invitation into a failed one.
    pub fn fail_invitation(&self, org: &str, login: &str, reason: &str) -> bool {
        let mut st = lock(&self.state);
        let o = st.org_mut(org);
        match o
            .invitations
            .iter_mut()
            .find(|i| i.failed.is_none() && i.login.eq_ignore_ascii_case(login))
        {
            Some(i) => {
                i.failed = Some((
                    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    reason.into(),
                ));
                true
            }
            None => false,
        }
    }

    /// `login` accepts their invitation: they become a member with its
    /// role and join the teams it carried.
    pub fn accept_invitation(&self, org: &str, login: &str) -> bool {
        let mut st = lock(&self.state);
        let o = st.org_mut(org);
        let Some(pos) = o
            .invitations
            .iter()
            .position(|i| i.failed.is_none() && i.login.eq_ignore_ascii_case(login))
        else {
            return false;
        };
        let i = o.invitations.remove(pos);
        let role = if i.role == "admin" { "admin" } else { "member" };
        for (slug, team_role) in &i.teams {
            if let Some(t) = o.teams.get_mut(slug) {
                t.members
                    .insert(i.login.to_lowercase(), (i.login.clone(), team_role.clone()));
            }
        }
        o.members.insert(i.login.to_lowercase(), (i.login, role.into()));
        true
    }

    pub fn add_outside_collaborator(&self, org: &str, login: &str) {
        let mut st = lock(&self.state);
        let (login, _) = st.user(login);
        st.org_mut(org).outside.push(login);
    }

    /// Sets the primary limit of `token`: `remaining` points, reset in
    /// `reset_in` seconds.
    pub fn set_rate_limit(&self, token: &str, remaining: u64, reset_in: u64) {
        let now = chrono::Utc::now().timestamp() as u64;
        lock(&self.state).rate.insert(token.into(), (remaining, now + reset_in));
    }

    /// Points left for `token`.
    pub fn rate_remaining(&self, token: &str) -> u64 {
        lock(&self.state).rate.get(token).map(|r| r.0).unwrap_or(RATE_LIMIT)
    }

    /// Registers a GitHub App: GitHub keeps its public key (PEM, PKCS#1 or
    /// SPKI) to check the App's JWTs, and installs it on each org in
    /// `installations` (created when missing). Returns the installation
    /// ids, in order.
    pub fn register_app(
        &self,
        app_id: u64,
        public_key_pem: &str,
        installations: &[&str],
    ) -> Result<Vec<u64>, ProviderError> {
        octocrab::jsonwebtoken::DecodingKey::from_rsa_pem(public_key_pem.as_bytes())
            .map_err(|e| ProviderError::Config(format!("app {app_id}: not an RSA public key in PEM form ({e})")))?;
        let mut st = lock(&self.state);
        st.apps.insert(
            app_id,
            SimApp {
                slug: format!("plumb-app-{app_id}"),
                public_pem: public_key_pem.as_bytes().to_vec(),
            },
        );
        let mut ids = Vec::new();
        for org in installations {
            let id = st.id();
            let o = st.org_mut(org);
            let (login, org_id) = (o.login.clone(), o.id);
            st.installations.insert(
                id,
                SimInstallation {
                    app_id,
                    org: login,
                    org_id,
                },
            );
            ids.push(id);
        }
        Ok(ids)
    }

    /// How long installation tokens minted from now on last (GitHub: one
    /// hour), so a test can make them expire during a run.
    pub fn set_installation_token_lifetime(&self, lifetime: std::time::Duration) {
        lock(&self.state).token_lifetime = chrono::Duration::from_std(lifetime).ok();
    }

    /// Expires every installation token minted so far (as if their hour
    /// were over): they answer `401 Bad credentials` from now on.
    pub fn expire_installation_tokens(&self) {
        let past = chrono::Utc::now() - chrono::Duration::seconds(1);
        for t in lock(&self.state).install_tokens.values_mut() {
            t.expires_at = past;
        }
    }

    /// Installation tokens minted so far.
    pub fn installation_tokens_minted(&self) -> usize {
        lock(&self.state).install_tokens.len()
    }

    pub fn inject(&self, fault: Fault) {
        lock(&self.state).faults.push(fault);
    }

    /// Every request so far, in order.
    pub fn log(&self) -> Vec<Logged> {
        lock(&self.state).log.clone()
    }

    pub fn clear_log(&self) {
        lock(&self.state).log.clear();
    }
}
