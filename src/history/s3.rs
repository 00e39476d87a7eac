//! The S3 store, through `aws-sdk-s3`: records as objects below
//! `history.s3.prefix`, written once with `If-None-Match: *` (never
//! overwritten; fits buckets with Object Lock), listed with
//! `ListObjectsV2` page by page past 1,000 keys; with
//! `history.s3.object_lock`, every object carries Object Lock retention
//! headers so not even the writer can delete or replace it before then. Path-style addressing and an
//! `endpoint` make S3-compatible stores work (MinIO, Ceph, moto).
//! Credentials come from the standard AWS chain: environment, profile
//! files, web identity, container and instance metadata. The HTTPS client
//! uses rustls with the `ring` provider, the one plumb installs for the
//! whole process.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use super::{HistoryError, Store};
use crate::config::{ObjectLockMode, ObjectLockSpec, S3Spec};

pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    endpoint: String,
    object_lock: Option<ObjectLockSpec>,
}

impl S3Store {
    pub async fn connect(spec: &S3Spec) -> Result<S3Store, HistoryError> {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(30))
            .operation_timeout(Duration::from_secs(90))
            .build();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
            .timeout_config(timeouts);
        if let Some(region) = &spec.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared).force_path_style(true);
        if let Some(endpoint) = &spec.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        if shared.region().is_none() && spec.region.is_none() {
            // S3-compatible stores rarely care; AWS itself needs a region.
            builder = builder.region(aws_config::Region::new("us-east-1"));
        }
        let prefix = spec.prefix.clone().unwrap_or_default();
        let prefix = if prefix.is_empty() || prefix.ends_with('/') {
            prefix
        } else {
            format!("{prefix}/")
        };
        Ok(S3Store {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
            bucket: spec.bucket.clone(),
            prefix,
            endpoint: spec.endpoint.clone().unwrap_or_else(|| "AWS S3".into()),
            object_lock: spec.object_lock.clone(),
        })
    }

    fn error(
        &self,
        what: &str,
        key: &str,
        e: impl std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    ) -> HistoryError {
        let message = match e.code() {
            Some("NoSuchBucket") => format!("{what} {key}: bucket {} does not exist", self.bucket),
            Some("AccessDenied") => {
                format!("{what} {key}: access denied (check the credentials and the bucket policy)")
            }
            Some("InvalidRequest") if self.object_lock.is_some() => format!(
                "{what} {key}: {} (history.s3.object_lock needs a bucket created with Object Lock enabled)",
                DisplayErrorContext(&e)
            ),
            _ => format!("{what} {key}: {}", DisplayErrorContext(&e)),
        };
        HistoryError::store(self.describe(), message, e)
    }
}

#[async_trait]
impl Store for S3Store {
    async fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), HistoryError> {
        let full = format!("{}{key}", self.prefix);
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .if_none_match("*")
            .content_type("application/json")
            .body(ByteStream::from(bytes.to_vec()));
        if let Some(lock) = &self.object_lock {
            let until = std::time::SystemTime::now() + lock.retain;
            request = request
                .object_lock_mode(match lock.mode {
                    ObjectLockMode::Governance => aws_sdk_s3::types::ObjectLockMode::Governance,
                    ObjectLockMode::Compliance => aws_sdk_s3::types::ObjectLockMode::Compliance,
                })
                .object_lock_retain_until_date(aws_sdk_s3::primitives::DateTime::from(until));
        }
        let result = request.send().await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("PreconditionFailed") => Err(HistoryError::Exists { key: key.to_string() }),
            Err(e) => Err(self.error("PUT", &full, e)),
        }
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, HistoryError> {
        self.get_opt(key).await?.ok_or_else(|| {
            HistoryError::store_message(self.describe(), format!("GET {}{key}: no such key", self.prefix))
        })
    }

    async fn get_opt(&self, key: &str) -> Result<Option<Vec<u8>>, HistoryError> {
        let full = format!("{}{key}", self.prefix);
        let object = match self.client.get_object().bucket(&self.bucket).key(&full).send().await {
            Ok(o) => o,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(self.error("GET", &full, e)),
        };
        let body = object
            .body
            .collect()
            .await
            .map_err(|e| HistoryError::store(self.describe(), format!("GET {full}: reading the body: {e}"), e))?;
        Ok(Some(body.into_bytes().to_vec()))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, HistoryError> {
        let full = format!("{}{prefix}", self.prefix);
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("LIST", &full, e))?;
            for object in page.contents() {
                if let Some(key) = object.key().and_then(|k| k.strip_prefix(&self.prefix)) {
                    if key.ends_with(".json") {
                        keys.push(key.to_string());
                    }
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn describe(&self) -> String {
        format!("s3://{}/{} at {}", self.bucket, self.prefix, self.endpoint)
    }
}
