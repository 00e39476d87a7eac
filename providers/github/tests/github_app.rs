//! GitHub App authentication end to end against the simulator: the JWT
//! rules the simulator enforces (checked with raw HTTP), installation
//! lookup, token minting, reuse and renewal (before expiry and after a
//! 401), a wrong key and a missing installation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use octocrab::jsonwebtoken as jwt;
use plumb_github::sim::{self, Sim, SimOptions};
use plumb_github::{build, GithubProvider};
use plumb_model::{Action, ApplyChange, Ctx, Outcome, Pair, Provider};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const APP_ID: u64 = 4242;

/// An RSA key pair as GitHub hands it out: the private key in PKCS#1 PEM
/// (`BEGIN RSA PRIVATE KEY`), the public key in SPKI PEM.
struct KeyPair {
    private_pem: String,
    public_pem: String,
}

fn openssl(args: &[&str], input: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl (Debian's openssl package) is needed to make test keys");
    if let Some(input) = input {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

fn keypair() -> KeyPair {
    let private_pem = openssl(&["genrsa", "-traditional", "2048"], None);
    let public_pem = openssl(&["rsa", "-pubout"], Some(&private_pem));
    KeyPair {
        private_pem,
        public_pem,
    }
}

/// Two key pairs, made once per test binary (RSA generation is slow).
fn keys() -> &'static (KeyPair, KeyPair) {
    static KEYS: OnceLock<(KeyPair, KeyPair)> = OnceLock::new();
    KEYS.get_or_init(|| (keypair(), keypair()))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn ctx(cache: &Path) -> Ctx {
    let mut c = Ctx::new("t", cache);
    c.timeout = Duration::from_secs(20);
    c
}

/// A simulator seeded with the small fixture (org `acme`), and a temp dir
/// holding `app.pem` (the App's real key) and `other.pem` (another key).
async fn setup() -> (Sim, tempfile::TempDir) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    sim.seed_dir(&fixture("small")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (good, other) = keys();
    std::fs::write(dir.path().join("app.pem"), &good.private_pem).unwrap();
    std::fs::write(dir.path().join("other.pem"), &other.private_pem).unwrap();
    (sim, dir)
}

fn app_provider(sim: &Sim, dir: &Path, key: &str, installation_id: Option<u64>) -> GithubProvider {
    let mut conn =
        json!({"org": "acme", "app_id": APP_ID, "private_key_file": key, "api_url": sim.url(), "retries": 2});
    if let Some(id) = installation_id {
        conn["installation_id"] = json!(id);
    }
    build(&conn, dir).unwrap()
}

/// Plans like the engine: match ids, normalize, compare.
async fn plan(p: &GithubProvider, c: &Ctx) -> (Vec<ApplyChange>, BTreeMap<String, Action>) {
    let dir = fixture("small");
    let desired = p.desired(&dir, &dir, c).unwrap();
    let live = p.live(&desired, c).await.unwrap();
    let d: BTreeMap<&str, _> = desired.resources.iter().map(|r| (r.id.as_str(), r)).collect();
    let l: BTreeMap<&str, _> = live.resources.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut out = BTreeMap::new();
    let mut changes = Vec::new();
    for (id, r) in &d {
        let action = match l.get(id) {
            None => Some(Action::Create),
            Some(lr) => {
                let (mut db, mut lb) = (r.body(), lr.body());
                p.normalize(Pair {
                    id,
                    kind: &r.kind,
                    desired: Some(&mut db),
                    live: Some(&mut lb),
                });
                (db != lb).then_some(Action::Update)
            }
        };
        if let Some(action) = action {
            out.insert(id.to_string(), action);
            changes.push(ApplyChange {
                id: id.to_string(),
                action,
                desired: Some((*r).clone()),
                live: l.get(id).map(|x| (*x).clone()),
            });
        }
    }
    for (id, r) in &l {
        if !d.contains_key(id) {
            out.insert(id.to_string(), Action::Delete);
            changes.push(ApplyChange {
                id: id.to_string(),
                action: Action::Delete,
                desired: None,
                live: Some((*r).clone()),
            });
        }
    }
    (changes, out)
}

fn count(sim: &Sim, method: &str, path_part: &str, status: u16) -> usize {
    sim.log()
        .iter()
        .filter(|l| l.method == method && l.path.contains(path_part) && l.status == status)
        .count()
}

/// One raw HTTP/1.1 request (no client library in between), for the
/// simulator's JWT rules: (status, JSON body).
async fn raw(sim: &Sim, method: &str, path: &str, bearer: &str) -> (u16, Value) {
    let addr = sim.url().trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {bearer}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn sign(claims: Value, private_pem: &str) -> String {
    let key = jwt::EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap();
    jwt::encode(&jwt::Header::new(jwt::Algorithm::RS256), &claims, &key).unwrap()
}

#[tokio::test]
async fn simulator_enforces_githubs_jwt_rules() {
    let (sim, _dir) = setup().await;
    let (good, other) = keys();
    let ids = sim.register_app(APP_ID, &good.public_pem, &["acme"]).unwrap();
    let t = now();
    let ok = sign(json!({"iss": APP_ID, "iat": t - 60, "exp": t + 540}), &good.private_pem);
    let (status, body) = raw(&sim, "GET", "/orgs/acme/installation", &ok).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], json!(ids[0]));
    assert_eq!(body["app_id"], json!(APP_ID));
    // `iss` may be the id as a string.
    let ok_str = sign(
        json!({"iss": APP_ID.to_string(), "iat": t - 60, "exp": t + 540}),
        &good.private_pem,
    );
    assert_eq!(raw(&sim, "GET", "/app/installations", &ok_str).await.0, 200);

    let cases = [
        (
            sign(
                json!({"iss": APP_ID, "iat": t - 60, "exp": t + 540}),
                &other.private_pem,
            ),
            sim::JWT_UNDECODABLE,
        ),
        (
            sign(json!({"iss": 999, "iat": t - 60, "exp": t + 540}), &good.private_pem),
            sim::JWT_UNDECODABLE,
        ),
        ("not.a.jwt".to_string(), sim::JWT_UNDECODABLE),
        (
            sign(json!({"iss": APP_ID, "iat": t, "exp": t + 660}), &good.private_pem),
            sim::JWT_EXP_TOO_FAR,
        ),
        (
            sign(
                json!({"iss": APP_ID, "iat": t - 700, "exp": t - 100}),
                &good.private_pem,
            ),
            sim::JWT_EXP_INVALID,
        ),
        (
            sign(json!({"iss": APP_ID, "iat": t - 60}), &good.private_pem),
            sim::JWT_EXP_INVALID,
        ),
        (
            sign(
                json!({"iss": APP_ID, "iat": t + 300, "exp": t + 500}),
                &good.private_pem,
            ),
            sim::JWT_IAT_INVALID,
        ),
    ];
    for (token, message) in cases {
        let (status, body) = raw(&sim, "GET", "/orgs/acme/installation", &token).await;
        assert_eq!((status, body["message"].as_str()), (401, Some(message)), "{token}");
    }
    // HS256 with the public key as secret (the classic algorithm confusion) is refused.
    let hs = jwt::encode(
        &jwt::Header::new(jwt::Algorithm::HS256),
        &json!({"iss": APP_ID, "iat": t - 60, "exp": t + 540}),
        &jwt::EncodingKey::from_secret(good.public_pem.as_bytes()),
    )
    .unwrap();
    assert_eq!(raw(&sim, "GET", "/app", &hs).await.0, 401);

    // An installation token: 201, works on its org, not on /user, not as a JWT.
    let (status, minted) = raw(
        &sim,
        "POST",
        &format!("/app/installations/{}/access_tokens", ids[0]),
        &ok,
    )
    .await;
    assert_eq!(status, 201, "{minted}");
    let token = minted["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("ghs_"));
    let expires = chrono::DateTime::parse_from_rfc3339(minted["expires_at"].as_str().unwrap()).unwrap();
    let left = expires.timestamp() - now();
    assert!(
        (3590..=3600).contains(&left),
        "GitHub's tokens last an hour, not {left}s"
    );
    assert_eq!(raw(&sim, "GET", "/orgs/acme/members", &token).await.0, 200);
    assert_eq!(raw(&sim, "GET", "/orgs/acme/invitations", &token).await.0, 200);
    assert_eq!(raw(&sim, "GET", "/user", &token).await.0, 403);
    assert_eq!(raw(&sim, "GET", "/app/installations", &token).await.0, 401);
    // Another org's owner-only list: not accessible by this installation.
    sim.add_org("elsewhere", "someone");
    let (status, body) = raw(&sim, "GET", "/orgs/elsewhere/invitations", &token).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (403, Some("Resource not accessible by integration"))
    );
    // An unknown installation is 404; an expired token is "Bad credentials".
    assert_eq!(
        raw(&sim, "POST", "/app/installations/987654/access_tokens", &ok)
            .await
            .0,
        404
    );
    sim.expire_installation_tokens();
    let (status, body) = raw(&sim, "GET", "/orgs/acme/members", &token).await;
    assert_eq!((status, body["message"].as_str()), (401, Some("Bad credentials")));
}

#[tokio::test]
async fn app_audits_without_drift_reuses_its_token_and_applies() {
    let (sim, dir) = setup().await;
    let (good, _) = keys();
    sim.register_app(APP_ID, &good.public_pem, &["acme"]).unwrap();
    let c = ctx(dir.path());
    let p = app_provider(&sim, dir.path(), "app.pem", None);
    let (_, pl) = plan(&p, &c).await;
    assert!(pl.is_empty(), "{pl:?}");
    assert_eq!(count(&sim, "GET", "/orgs/acme/installation", 200), 1);
    assert_eq!(count(&sim, "POST", "/access_tokens", 201), 1);
    assert!(sim.log().iter().all(|l| l.status != 401), "{:?}", sim.log());
    assert!(count(&sim, "GET", "/orgs/acme/members", 200) >= 1);

    // Drift, applied as the App (the installation token carries the writes;
    // GET /user is not for installations, which the guard tolerates).
    sim.set_team_repo("acme", "platform", "infra", Some("write"));
    sim.set_member("acme", "mallory", "member");
    let (changes, pl) = plan(&p, &c).await;
    assert_eq!(pl.get("github/acme/team/platform/repo/infra"), Some(&Action::Update));
    assert_eq!(pl.get("github/acme/member/mallory"), Some(&Action::Delete));
    let results = p.apply(&changes, &c).await.unwrap();
    assert!(results.iter().all(|r| r.outcome == Outcome::Applied), "{results:?}");
    assert_eq!(
        sim.team_repos("acme", "platform").get("infra").map(String::as_str),
        Some("admin")
    );
    assert_eq!(sim.member_role("acme", "mallory"), None);
    let (_, pl) = plan(&p, &c).await;
    assert!(pl.is_empty(), "{pl:?}");
    // One token served all three runs and the apply; the installation was
    // looked up once.
    assert_eq!(sim.installation_tokens_minted(), 1);
    assert_eq!(count(&sim, "GET", "/orgs/acme/installation", 200), 1);
}

#[tokio::test]
async fn given_installation_id_skips_the_lookup() {
    let (sim, dir) = setup().await;
    let (good, _) = keys();
    let ids = sim.register_app(APP_ID, &good.public_pem, &["acme"]).unwrap();
    let c = ctx(dir.path());
    let p = app_provider(&sim, dir.path(), "app.pem", Some(ids[0]));
    let (_, pl) = plan(&p, &c).await;
    assert!(pl.is_empty(), "{pl:?}");
    assert_eq!(count(&sim, "GET", "/installation", 200), 0);
    assert_eq!(
        count(
            &sim,
            "POST",
            &format!("/app/installations/{}/access_tokens", ids[0]),
            201
        ),
        1
    );
}

#[tokio::test]
async fn token_near_its_expiry_is_renewed_during_a_run() {
    let (sim, dir) = setup().await;
    let (good, _) = keys();
    sim.register_app(APP_ID, &good.public_pem, &["acme"]).unwrap();
    // Tokens that live 4 minutes have less than the 5-minute margin left
    // as soon as they are minted: each request gets a fresh one first.
    sim.set_installation_token_lifetime(Duration::from_secs(240));
    let c = ctx(dir.path());
    let p = app_provider(&sim, dir.path(), "app.pem", None);
    let (_, pl) = plan(&p, &c).await;
    assert!(pl.is_empty(), "{pl:?}");
    let rest_calls = sim
        .log()
        .iter()
        .filter(|l| !l.path.starts_with("/app/") && !l.path.ends_with("/installation"))
        .count();
    assert!(rest_calls > 5);
    assert_eq!(sim.installation_tokens_minted(), rest_calls);
    assert!(sim.log().iter().all(|l| l.status != 401), "{:?}", sim.log());

    // An hour-long token is kept.
    sim.set_installation_token_lifetime(Duration::from_secs(3600));
    let p = app_provider(&sim, dir.path(), "app.pem", None);
    let (_, pl) = plan(&p, &c).await;
    assert!(pl.is_empty(), "{pl:?}");
    let (_, pl) = plan(&p, &c).await;
    assert!(pl.is_empty(), "{pl:?}");
    assert_eq!(sim.installation_tokens_minted(), rest_calls + 1);
}

#[tokio::test]
async fn expired_token_is_replaced_after_a_401() {
    let (sim, dir) = setup().await;
    let (good, _) = keys();
    sim.register_app(APP_ID, &good.public_pem, &["acme"]).unwrap();
    let c = ctx(dir.path());
    let p = app_provider(&sim, dir.path(), "app.pem", None);
    let (_, pl) = plan(&p, &c).await;
    assert!(pl.is_empty(), "{pl:?}");
    assert_eq!(sim.installation_tokens_minted(), 1);
    // GitHub expires (or revokes) the token before plumb expected.
    sim.expire_installation_tokens();
    sim.clear_log();
    let (_, pl) = plan(&p, &c).await;
    assert!(pl.is_empty(), "{pl:?}");
    assert_eq!(sim.installation_tokens_minted(), 2);
    let log = sim.log();
    assert_eq!(log.iter().filter(|l| l.status == 401).count(), 1, "{log:?}");
    assert_eq!(log[0].status, 401, "{log:?}");
    assert_eq!((log[1].method.as_str(), log[1].status), ("POST", 201), "{log:?}");
    assert_eq!(log[2].path, log[0].path, "the refused request is sent again");
}

#[tokio::test]
async fn wrong_key_names_the_app_and_request_never_the_key() {
    let (sim, dir) = setup().await;
    let (good, other) = keys();
    let ids = sim.register_app(APP_ID, &good.public_pem, &["acme"]).unwrap();
    let c = ctx(dir.path());
    let secret_line = other.private_pem.lines().nth(1).unwrap();
    for (installation, request) in [
        (None, format!("GET {}/orgs/acme/installation", sim.url())),
        (
            Some(ids[0]),
            format!("POST {}/app/installations/{}/access_tokens", sim.url(), ids[0]),
        ),
    ] {
        let p = app_provider(&sim, dir.path(), "other.pem", installation);
        let desired = p.desired(&fixture("small"), &fixture("small"), &c).unwrap();
        let err = p.live(&desired, &c).await.unwrap_err().to_string();
        assert!(err.contains(&request), "{err}");
        assert!(err.contains("401"), "{err}");
        assert!(err.contains(&format!("GitHub App {APP_ID}")), "{err}");
        assert!(err.contains(sim::JWT_UNDECODABLE), "{err}");
        assert!(err.contains("other.pem"), "names the key's file: {err}");
        assert!(!err.contains("BEGIN") && !err.contains(secret_line), "{err}");
        assert!(!err.contains("eyJ"), "no JWT in the error: {err}");
    }
    // The refused JWT is not retried in a loop.
    assert_eq!(count(&sim, "GET", "/orgs/acme/installation", 401), 1);
    assert_eq!(count(&sim, "POST", "/access_tokens", 401), 1);
}

#[tokio::test]
async fn missing_installation_is_a_clear_error() {
    let (sim, dir) = setup().await;
    let (good, _) = keys();
    sim.register_app(APP_ID, &good.public_pem, &["other-org"]).unwrap();
    let c = ctx(dir.path());
    let p = app_provider(&sim, dir.path(), "app.pem", None);
    let desired = p.desired(&fixture("small"), &fixture("small"), &c).unwrap();
    let err = p.live(&desired, &c).await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("GET {}/orgs/acme/installation", sim.url())) && err.contains("404"),
        "{err}"
    );
    assert!(
        err.contains(&format!("GitHub App {APP_ID} is not installed on org acme")) && err.contains("installation_id"),
        "{err}"
    );
    // A stated installation_id that is not this App's: 404 naming it.
    let p = app_provider(&sim, dir.path(), "app.pem", Some(777_777));
    let err = p.live(&desired, &c).await.unwrap_err().to_string();
    assert!(
        err.contains("/app/installations/777777/access_tokens")
            && err.contains(&format!("GitHub App {APP_ID} has no installation 777777")),
        "{err}"
    );
}

#[tokio::test]
async fn token_minting_is_retried_on_server_errors() {
    let (sim, dir) = setup().await;
    let (good, _) = keys();
    sim.register_app(APP_ID, &good.public_pem, &["acme"]).unwrap();
    sim.inject(plumb_github::sim::Fault::status("/app/installations", 502, 2));
    let c = ctx(dir.path());
    let p = app_provider(&sim, dir.path(), "app.pem", None);
    let (_, pl) = plan(&p, &c).await;
    assert!(pl.is_empty(), "{pl:?}");
    assert_eq!(count(&sim, "POST", "/access_tokens", 502), 2);
    assert_eq!(count(&sim, "POST", "/access_tokens", 201), 1);
}
