//! Every TLS client plumb builds, in one process: kube (Kubernetes),
//! reqwest (Grafana, Prometheus, Alertmanager) and the AWS SDK (S3 history).
//! They pull rustls in with different default crypto providers; plumb
//! installs `ring` once at start-up so none of them panics with "Could not
//! automatically determine the process-level CryptoProvider".

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tls_client_builds_in_one_process() {
    plumb::install_crypto_provider();
    let provider = rustls::crypto::CryptoProvider::get_default().expect("a process-level provider");
    assert!(
        provider
            .cipher_suites
            .iter()
            .all(|s| format!("{s:?}").starts_with("TLS")),
        "unexpected provider"
    );

    // Kubernetes, as the kubernetes provider builds it.
    let config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
    kube::Client::try_from(config).expect("kube client");

    // reqwest with rustls and no provider of its own (Grafana, Prometheus).
    reqwest::Client::builder()
        .https_only(true)
        .build()
        .expect("reqwest client");

    // The S3 history store.
    std::env::set_var("AWS_ACCESS_KEY_ID", "x");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "y");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let spec = plumb::config::S3Spec {
        bucket: "b".into(),
        prefix: None,
        region: Some("eu-west-1".into()),
        endpoint: Some("https://127.0.0.1:9".into()),
        object_lock: None,
    };
    plumb::history::s3::S3Store::connect(&spec).await.expect("s3 client");

    // Installing again is harmless.
    plumb::install_crypto_provider();
}
