//! The S3 history store against a real S3-compatible server started here on
//! loopback (moto's server, `pip install 'moto[server]'`; scripts/test.sh
//! installs it): writes, listing past 1,000 keys, reading back, a missing
//! bucket, a chain verified through S3, every tampering named as on a local
//! directory, Object Lock on every object, and a server that is gone.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plumb::config::S3Spec;
use plumb::history::s3::S3Store;
use plumb::history::{HistoryError, Store};

struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_moto() -> Moto {
    let port = free_port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server is needed for the S3 tests: pip install 'moto[server]' (scripts/test.sh installs it)");
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not listen on {endpoint} within 30s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto { child, endpoint }
}

fn credentials() {
    // The standard chain reads these; moto accepts any.
    std::env::set_var("AWS_ACCESS_KEY_ID", "plumb-test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "plumb-test-secret");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
}

fn spec(endpoint: &str, bucket: &str) -> S3Spec {
    S3Spec {
        bucket: bucket.into(),
        prefix: Some("plumb".into()),
        region: Some("eu-west-1".into()),
        endpoint: Some(endpoint.into()),
        object_lock: None,
    }
}

fn client(endpoint: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("eu-west-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        )
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "plumb-test",
            "plumb-test-secret",
            None,
            None,
            "test",
        ))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

async fn create_bucket(endpoint: &str, bucket: &str) {
    create_bucket_with(endpoint, bucket, false).await
}

async fn create_bucket_with(endpoint: &str, bucket: &str, object_lock: bool) {
    client(endpoint)
        .create_bucket()
        .bucket(bucket)
        .object_lock_enabled_for_bucket(object_lock)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest1)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_writes_lists_past_a_thousand_reads_back_and_never_overwrites() {
    plumb::install_crypto_provider();
    credentials();
    let moto = start_moto();
    create_bucket(&moto.endpoint, "audit").await;
    let store = S3Store::connect(&spec(&moto.endpoint, "audit")).await.unwrap();

    let keys: Vec<String> = (0..1_050).map(|i| format!("app/2026/11/01/{i:05}-c.json")).collect();
    let writes = keys.iter().map(|k| {
        let store = &store;
        async move { store.put_new(k, format!("{{\"n\": \"{k}\"}}").as_bytes()).await }
    });
    for result in futures_util::future::join_all(writes).await {
        result.unwrap();
    }
    store.put_new("other/2026/11/01/x.json", b"{}").await.unwrap();

    let listed = store.list("app/").await.unwrap();
    assert_eq!(listed.len(), 1_050, "listing must page past 1,000 keys");
    assert_eq!(listed, keys);
    assert_eq!(
        store.get(&keys[1_049]).await.unwrap(),
        format!("{{\"n\": \"{}\"}}", keys[1_049]).into_bytes()
    );
    assert_eq!(plumb::history::targets_in(&store).await.unwrap(), ["app", "other"]);

    match store.put_new(&keys[0], b"{\"overwritten\": true}").await {
        Err(HistoryError::Exists { .. }) => {}
        other => panic!("a second write to one key must be refused, got {other:?}"),
    }
    assert_eq!(
        store.get(&keys[0]).await.unwrap(),
        format!("{{\"n\": \"{}\"}}", keys[0]).into_bytes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_a_clear_error() {
    plumb::install_crypto_provider();
    credentials();
    let moto = start_moto();
    let store = S3Store::connect(&spec(&moto.endpoint, "no-such-bucket")).await.unwrap();
    let err = store.put_new("app/x.json", b"{}").await.unwrap_err().to_string();
    assert!(err.contains("bucket no-such-bucket does not exist"), "{err}");
    let err = store.list("app/").await.unwrap_err().to_string();
    assert!(err.contains("does not exist"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_chain_and_report_through_s3() {
    plumb::install_crypto_provider();
    credentials();
    let moto = start_moto();
    create_bucket(&moto.endpoint, "chain").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("desired")).unwrap();
    let text = format!(
        "source: {{ dir: ./desired }}\nstate_dir: ./state\nhistory:\n  s3: {{ bucket: chain, prefix: plumb/, region: eu-west-1, endpoint: \"{}\" }}\ntargets:\n  - name: app\n    provider: exec\n",
        moto.endpoint
    );
    std::fs::write(dir.path().join("plumb.yaml"), text).unwrap();
    let config = plumb::config::Config::load(&dir.path().join("plumb.yaml")).unwrap();
    let recorder = plumb::history::History::open(&config).await.unwrap();
    let store = recorder.store();
    for (i, code) in [0, 2, 2, 0].iter().enumerate() {
        let mut target = plumb::plan::TargetPlan::failed("app", "exec", String::new());
        target.error = None;
        target.exit_code = *code;
        let when = chrono::Utc::now() - chrono::Duration::minutes(40 - 10 * i as i64);
        let plan = plumb::plan::Plan {
            format_version: 1,
            plumb_version: "test".into(),
            source: Default::default(),
            started_at: when,
            finished_at: when,
            exit_code: *code,
            targets: vec![target],
            seal: None,
        };
        let outcome = recorder.record(&plan, &BTreeMap::new()).await;
        assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    }
    recorder
        .write_digests(&["app".into()], plumb::history::digest::DigestReason::Run)
        .await;
    let options = common::options(&config, store);
    let verdict = plumb::history::verify::verify(store, &["app".into()], &options)
        .await
        .unwrap();
    assert!(verdict.intact, "{}", plumb::history::verify::text(&verdict));
    assert_eq!((verdict.records_read, verdict.digests_read), (4, 1));
    let now = chrono::Utc::now();
    let report = plumb::history::report::build(
        store,
        &["app".into()],
        now - chrono::Duration::hours(1),
        now,
        chrono::Duration::hours(1),
    )
    .await
    .unwrap();
    assert_eq!(report.targets[0].audits, 4);
    assert_eq!(report.targets[0].incidents.len(), 1);
    assert_eq!(report.targets[0].incidents[0].duration_seconds, 20 * 60);
}

#[test]
fn a_store_that_is_gone_loses_nothing_of_the_plan() {
    // The S3 endpoint answers nothing: the plan is still printed in full and
    // the exit code is the plan's; the failed write is said on stderr.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("desired/app")).unwrap();
    std::fs::write(root.join("desired/app/a.yaml"), "id: user/a\nrole: admin\n").unwrap();
    std::fs::write(root.join("live.json"), r#"[{"id": "user/a", "role": "owner"}]"#).unwrap();
    let port = free_port();
    let text = format!(
        "source: {{ dir: ./desired }}\nstate_dir: ./state\nhistory:\n  s3: {{ bucket: gone, region: eu-west-1, endpoint: \"http://127.0.0.1:{port}\" }}\ntargets:\n  - name: app\n    provider: exec\n    path: app\n    connection: {{ command: [cat, live.json] }}\n"
    );
    std::fs::write(root.join("plumb.yaml"), text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["plan", "--record", "-c"])
        .arg(root.join("plumb.yaml"))
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("~ user/a (update)") && stdout.contains("Plan: 0 to create, 1 to update"),
        "{stdout}"
    );
    assert!(stderr.contains("history record of app not written"), "{stderr}");
}

/// `plumb serve` with its history in S3: the store dies mid-run; audits go
/// on, the failed writes are counted, and what was written stays readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_auditing_when_the_store_dies_and_counts_the_failures() {
    plumb::install_crypto_provider();
    credentials();
    let mut moto = start_moto();
    create_bucket(&moto.endpoint, "serve").await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("desired/app")).unwrap();
    std::fs::write(root.join("desired/app/a.yaml"), "id: user/a\nrole: admin\n").unwrap();
    std::fs::write(root.join("live.json"), r#"[{"id": "user/a", "role": "owner"}]"#).unwrap();
    let port = free_port();
    let text = format!(
        "source: {{ dir: ./desired }}\nstate_dir: ./state\nserver: {{ listen: \"127.0.0.1:{port}\" }}\nhistory:\n  s3: {{ bucket: serve, prefix: plumb/, region: eu-west-1, endpoint: \"{}\" }}\ntargets:\n  - name: app\n    provider: exec\n    path: app\n    schedule: \"* * * * * *\"\n    connection: {{ command: [cat, live.json] }}\n",
        moto.endpoint
    );
    std::fs::write(root.join("plumb.yaml"), text).unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["serve", "-c"])
        .arg(root.join("plumb.yaml"))
        .env("AWS_ACCESS_KEY_ID", "plumb-test")
        .env("AWS_SECRET_ACCESS_KEY", "plumb-test-secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let value = |text: &str, name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    let store = S3Store::connect(&spec(&moto.endpoint, "serve")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.list("app/").await.map(|k| k.len()).unwrap_or(0) < 2 {
        assert!(Instant::now() < deadline, "serve wrote no records to S3");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = store.list("app/").await.unwrap();

    // The store goes away.
    let _ = moto.child.kill();
    let _ = moto.child.wait();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last_run_then = None;
    loop {
        assert!(Instant::now() < deadline, "no history failure counted");
        if let Ok(r) = http.get(&metrics).send().await {
            let text = r.text().await.unwrap_or_default();
            let failures = value(&text, "plumb_history_write_failures_total").unwrap_or(0.0);
            let last_run = value(&text, "plumb_last_run_timestamp_seconds{target=\"app\"}");
            assert_eq!(
                value(&text, "plumb_plan_exit_code{provider=\"exec\",target=\"app\"}"),
                Some(2.0),
                "{text}"
            );
            if failures >= 1.0 {
                match last_run_then {
                    None => last_run_then = last_run,
                    Some(then) if last_run > Some(then) => break, // audits go on after the failure
                    Some(_) => {}
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(serve.try_wait().unwrap().is_none(), "serve stopped");
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(before.len() >= 2);
}

/// What someone with write access to the bucket can do.
struct S3Tamper {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

#[async_trait::async_trait]
impl common::Tamper for S3Tamper {
    async fn read(&self, key: &str) -> Vec<u8> {
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(format!("{}{key}", self.prefix))
            .send()
            .await
            .unwrap();
        object.body.collect().await.unwrap().into_bytes().to_vec()
    }
    async fn write(&self, key: &str, bytes: &[u8]) {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(format!("{}{key}", self.prefix))
            .body(aws_sdk_s3::primitives::ByteStream::from(bytes.to_vec()))
            .send()
            .await
            .unwrap();
    }
    async fn delete(&self, key: &str) {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(format!("{}{key}", self.prefix))
            .send()
            .await
            .unwrap();
    }
}

/// The same tamperings as on a local directory, each on its own copy of a
/// history in S3, each named with its key and kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_every_tampering_of_an_s3_history() {
    plumb::install_crypto_provider();
    credentials();
    let moto = start_moto();
    create_bucket(&moto.endpoint, "tamper").await;
    for (n, scenario) in common::SCENARIOS.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let config = common::config_with_history(
            dir.path(),
            &format!(
                "{{ s3: {{ bucket: tamper, prefix: copy{n}/, region: eu-west-1, endpoint: \"{}\" }} }}",
                moto.endpoint
            ),
        );
        let history = plumb::history::History::open(&config).await.unwrap();
        common::six_runs(&history).await;
        let store = history.store();
        let targets = ["app".to_string(), "other".to_string()];
        let verdict = plumb::history::verify::verify(store, &targets, &common::options(&config, store))
            .await
            .unwrap();
        assert!(verdict.intact, "{scenario}: {}", plumb::history::verify::text(&verdict));
        let tamper = S3Tamper {
            client: client(&moto.endpoint),
            bucket: "tamper".into(),
            prefix: format!("copy{n}/"),
        };
        let (key, kind) = common::tamper(scenario, &tamper).await;
        let verdict = plumb::history::verify::verify(store, &targets, &common::options(&config, store))
            .await
            .unwrap();
        common::assert_named(scenario, &verdict, &key, kind);
    }
}

/// `history.s3.object_lock` puts every record and digest under retention:
/// the server reports the mode and date, and refuses to delete the version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_lock_retains_every_record_and_digest() {
    plumb::install_crypto_provider();
    credentials();
    let moto = start_moto();
    create_bucket_with(&moto.endpoint, "locked", true).await;
    let dir = tempfile::tempdir().unwrap();
    let config = common::config_with_history(
        dir.path(),
        &format!(
            "{{ s3: {{ bucket: locked, prefix: plumb/, region: eu-west-1, endpoint: \"{}\", object_lock: {{ mode: governance, retain: 400d }} }} }}",
            moto.endpoint
        ),
    );
    let history = plumb::history::History::open(&config).await.unwrap();
    common::six_runs(&history).await;
    let s3 = client(&moto.endpoint);
    let now = std::time::SystemTime::now();
    for key in [common::record_key("app", 1), common::digest_key("app", 6)] {
        let full = format!("plumb/{key}");
        // The object's lock, as HEAD reports it (x-amz-object-lock-*).
        let head = s3.head_object().bucket("locked").key(&full).send().await.unwrap();
        assert_eq!(
            head.object_lock_mode,
            Some(aws_sdk_s3::types::ObjectLockMode::Governance)
        );
        let until = std::time::SystemTime::try_from(head.object_lock_retain_until_date.unwrap()).unwrap();
        let days = until.duration_since(now).unwrap().as_secs() / 86_400;
        assert!((399..=400).contains(&days), "{key}: retained {days} days");
        let deleted = s3
            .delete_object()
            .bucket("locked")
            .key(&full)
            .version_id(head.version_id.unwrap())
            .send()
            .await;
        assert!(deleted.is_err(), "{key}: a locked version was deleted");
    }
    // A bucket without Object Lock refuses the headers with a clear error.
    create_bucket(&moto.endpoint, "unlocked").await;
    let dir = tempfile::tempdir().unwrap();
    let config = common::config_with_history(
        dir.path(),
        &format!(
            "{{ s3: {{ bucket: unlocked, region: eu-west-1, endpoint: \"{}\", object_lock: {{ mode: compliance, retain: 1d }} }} }}",
            moto.endpoint
        ),
    );
    let history = plumb::history::History::open(&config).await.unwrap();
    let outcome = history
        .record(
            &common::plan(&chrono::Utc::now().to_rfc3339(), 0, &[], "c"),
            &BTreeMap::new(),
        )
        .await;
    assert_eq!(outcome.failed.len(), 1, "{:?}", outcome.written);
    assert!(outcome.failed[0].1.contains("Object Lock"), "{}", outcome.failed[0].1);
}
