//! Live calls under failure: transient answers are retried with backoff,
//! `Retry-After` is honoured, client errors are not retried, and a server
//! that never answers cannot hang an audit. A tiny axum server on
//! 127.0.0.1:0 plays a ruler that misbehaves on cue.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use common::*;
use plumb_model::{Desired, Provider, ProviderError};
use plumb_prometheus::build;
use serde_json::json;

/// Serves the ruler's list endpoint: the first `failures` answers are
/// `status` (with `retry_after` if set), then `404 no rule groups found`.
async fn flaky(failures: usize, status: StatusCode, retry_after: Option<&'static str>) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new()
        .route(
            "/prometheus/config/v1/rules",
            get(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < failures {
                        let mut r = (status, "try later").into_response();
                        if let Some(secs) = retry_after {
                            r.headers_mut().insert("retry-after", secs.parse().unwrap());
                        }
                        r
                    } else {
                        (StatusCode::NOT_FOUND, "no rule groups found\n").into_response()
                    }
                }
            }),
        )
        .route(
            "/prometheus/api/v1/rules",
            get(|| async { r#"{"status":"success","data":{"groups":[]}}"# }),
        )
        .route(
            "/slow/prometheus/config/v1/rules",
            get(|| async {
                std::future::pending::<()>().await;
                ""
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, hits)
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    init();
    let (url, hits) = flaky(2, StatusCode::SERVICE_UNAVAILABLE, None).await;
    let p = build(&json!({"ruler_url": url, "tenant": "t", "retries": 3}), Path::new(".")).unwrap();
    let live = p.live(&Desired::default(), &ctx()).await.unwrap();
    assert!(live.resources.is_empty());
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn retries_are_bounded_and_the_error_names_request_and_status() {
    init();
    let (url, hits) = flaky(100, StatusCode::BAD_GATEWAY, None).await;
    let p = build(&json!({"ruler_url": url, "tenant": "t", "retries": 2}), Path::new(".")).unwrap();
    let err = p.live(&Desired::default(), &ctx()).await.unwrap_err();
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert!(matches!(err, ProviderError::Api { status: Some(502), .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("GET {url}/prometheus/config/v1/rules: HTTP 502")),
        "{err}"
    );
}

#[tokio::test]
async fn rate_limit_answers_wait_as_retry_after_says() {
    init();
    let (url, hits) = flaky(1, StatusCode::TOO_MANY_REQUESTS, Some("1")).await;
    let p = build(&json!({"ruler_url": url, "tenant": "t", "retries": 2}), Path::new(".")).unwrap();
    let started = Instant::now();
    p.live(&Desired::default(), &ctx()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "{:?}", started.elapsed());
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    init();
    let (url, hits) = flaky(100, StatusCode::FORBIDDEN, None).await;
    let p = build(&json!({"ruler_url": url, "tenant": "t", "retries": 3}), Path::new(".")).unwrap();
    let err = p.live(&Desired::default(), &ctx()).await.unwrap_err();
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert!(err.to_string().contains("HTTP 403: try later"), "{err}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    init();
    let (url, _) = flaky(0, StatusCode::OK, None).await;
    let p = build(
        &json!({"ruler_url": format!("{url}/slow"), "tenant": "t", "timeout": "300ms", "retries": 1}),
        Path::new("."),
    )
    .unwrap();
    let started = Instant::now();
    let err = p.live(&Desired::default(), &ctx()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(err.to_string().contains("timed out"), "{err}");
}
