//! The Kubernetes API as plumb uses it: a `kube::Client` built from the
//! user's kubeconfig (context, exec plugins, client certificates, CA) or the
//! in-cluster service account, raw requests with bounded retries (5xx,
//! connection errors, timeouts; 429 waited out as `Retry-After` says), errors
//! that name the request and status, and per-group-version discovery.

use std::collections::HashMap;
use std::time::Duration;

use http::{Method, Request};
use http_body_util::BodyExt;
use kube::config::{KubeConfigOptions, Kubeconfig};
use plumb_model::ProviderError;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::connection::Connection;

/// Attempts per request, and the backoff between them.
const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A served resource, as discovery describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResource {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
}

impl ApiResource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `/api/v1/namespaces/ns/configmaps[/name]`.
    pub fn path(&self, namespace: Option<&str>, name: Option<&str>) -> String {
        let mut path = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        if self.namespaced {
            if let Some(ns) = namespace {
                path.push_str("/namespaces/");
                path.push_str(ns);
            }
        }
        path.push('/');
        path.push_str(&self.plural);
        if let Some(name) = name {
            path.push('/');
            path.push_str(name);
        }
        path
    }
}

/// One answer from the API server.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("response is not JSON: {e}"))
    }

    /// The `message` of a metav1.Status body, else the body's start.
    pub fn message(&self) -> String {
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(v) => v
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string().chars().take(300).collect()),
            Err(_) => String::from_utf8_lossy(&self.body).chars().take(300).collect(),
        }
    }

    /// `reason` of a metav1.Status body (`Conflict`, `Forbidden`, ...).
    pub fn reason(&self) -> Option<String> {
        serde_json::from_slice::<Value>(&self.body)
            .ok()?
            .get("reason")?
            .as_str()
            .map(str::to_string)
    }
}

/// A connected client.
pub struct Api {
    client: kube::Client,
    /// The server's URL for messages, without credentials.
    server: String,
    timeout: Duration,
    discovery: Mutex<HashMap<String, Option<Vec<ApiResource>>>>,
}

impl Api {
    /// Builds a client the way kubectl would find its cluster.
    pub async fn connect(connection: &Connection, timeout: Duration) -> Result<Api, ProviderError> {
        let mut config = if connection.in_cluster {
            kube::Config::incluster()
                .map_err(|e| ProviderError::Config(format!("kubernetes in-cluster configuration: {e}")))?
        } else {
            let options = KubeConfigOptions {
                context: connection.context.clone(),
                ..Default::default()
            };
            match &connection.kubeconfig {
                Some(path) => {
                    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| {
                        ProviderError::Config(format!("kubeconfig {}: {}", path.display(), error_chain(&e)))
                    })?;
                    kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                        .await
                        .map_err(|e| {
                            ProviderError::Config(format!("kubeconfig {}: {}", path.display(), error_chain(&e)))
                        })?
                }
                None if connection.context.is_some() => kube::Config::from_kubeconfig(&options)
                    .await
                    .map_err(|e| ProviderError::Config(format!("kubeconfig: {}", error_chain(&e))))?,
                None => kube::Config::infer()
                    .await
                    .map_err(|e| ProviderError::Config(format!("kubernetes configuration: {}", error_chain(&e))))?,
            }
        };
        // plumb retries itself (with Retry-After and its own bound).
        config.default_retry = false;
        config.connect_timeout = Some(timeout.min(Duration::from_secs(10)));
        config.read_timeout = Some(timeout);
        config.write_timeout = Some(timeout);
        let server = without_credentials(&config.cluster_url.to_string());
        let client = kube::Client::try_from(config)
            .map_err(|e| ProviderError::Config(format!("kubernetes client for {server}: {}", error_chain(&e))))?;
        Ok(Api {
            client,
            server,
            timeout,
            discovery: Mutex::new(HashMap::new()),
        })
    }

    /// `METHOD URL` for messages.
    pub fn describe(&self, method: &Method, path_and_query: &str) -> String {
        format!("{method} {}{path_and_query}", self.server)
    }

    /// Sends one request, retrying transient failures with exponential
    /// backoff: connection errors, timeouts, 500/502/503/504, and 429 (after
    /// `Retry-After`). Other statuses are returned for the caller to judge.
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(&[u8], &str)>,
    ) -> Result<Response, ProviderError> {
        let what = self.describe(&method, path_and_query);
        let mut backoff = FIRST_BACKOFF;
        let mut last_error = String::new();
        let mut last_status = None;
        for attempt in 1..=ATTEMPTS {
            let mut builder = Request::builder().method(method.clone()).uri(path_and_query);
            builder = builder.header(http::header::ACCEPT, "application/json");
            let bytes = match body {
                Some((bytes, content_type)) => {
                    builder = builder.header(http::header::CONTENT_TYPE, content_type);
                    bytes.to_vec()
                }
                None => Vec::new(),
            };
            let request = builder
                .body(kube::client::Body::from(bytes))
                .map_err(|e| ProviderError::Other(format!("{what}: could not build the request: {e}")))?;
            let mut wait = backoff;
            match tokio::time::timeout(self.timeout, self.send(request)).await {
                Err(_) => {
                    last_error = format!("no answer within {}s", self.timeout.as_secs_f32());
                    last_status = None;
                }
                Ok(Err(e)) => {
                    last_error = e;
                    last_status = None;
                }
                Ok(Ok((response, retry_after))) => {
                    let status = response.status;
                    if !(status == 429 || matches!(status, 500 | 502 | 503 | 504)) {
                        return Ok(response);
                    }
                    last_error = response.message();
                    last_status = Some(status);
                    if let Some(after) = retry_after {
                        wait = after.min(self.timeout);
                    }
                }
            }
            if attempt < ATTEMPTS {
                tracing::debug!(request = %what, attempt, error = %last_error, "retrying Kubernetes API request");
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        Err(ProviderError::Api {
            request: what,
            status: last_status,
            message: format!("{last_error} (after {ATTEMPTS} attempts)"),
        })
    }

    async fn send(&self, request: Request<kube::client::Body>) -> Result<(Response, Option<Duration>), String> {
        let response = self.client.send(request).await.map_err(|e| error_chain(&e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the response: {}", error_chain(&e)))?
            .to_bytes()
            .to_vec();
        Ok((Response { status, body }, retry_after))
    }

    /// GET returning JSON, any status but 200 an error naming the request.
    pub async fn get_json(&self, path_and_query: &str) -> Result<Value, ProviderError> {
        let response = self.request(Method::GET, path_and_query, None).await?;
        if response.status != 200 {
            return Err(self.status_error(&Method::GET, path_and_query, &response));
        }
        response.json().map_err(|message| ProviderError::Api {
            request: self.describe(&Method::GET, path_and_query),
            status: Some(200),
            message,
        })
    }

    pub fn status_error(&self, method: &Method, path_and_query: &str, response: &Response) -> ProviderError {
        ProviderError::Api {
            request: self.describe(method, path_and_query),
            status: Some(response.status),
            message: response.message(),
        }
    }

    /// The resource serving `kind` in `api_version`, `None` when the
    /// server does not serve it. One request per group-version, cached.
    pub async fn resolve(&self, api_version: &str, kind: &str) -> Result<Option<ApiResource>, ProviderError> {
        let mut cache = self.discovery.lock().await;
        if !cache.contains_key(api_version) {
            let path = if api_version.contains('/') {
                format!("/apis/{api_version}")
            } else {
                format!("/api/{api_version}")
            };
            let response = self.request(Method::GET, &path, None).await?;
            let resources = match response.status {
                200 => {
                    let list = response.json().map_err(|message| ProviderError::Api {
                        request: self.describe(&Method::GET, &path),
                        status: Some(200),
                        message,
                    })?;
                    Some(parse_resource_list(api_version, &list))
                }
                404 => None,
                _ => return Err(self.status_error(&Method::GET, &path, &response)),
            };
            cache.insert(api_version.to_string(), resources);
        }
        Ok(cache
            .get(api_version)
            .and_then(|r| r.as_ref())
            .and_then(|list| list.iter().find(|r| r.kind == kind).cloned()))
    }

    /// Forgets what discovery said about `api_version` (after creating a CRD).
    pub async fn forget(&self, api_version: &str) {
        self.discovery.lock().await.remove(api_version);
    }
}

/// metav1.APIResourceList → its resources (subresources such as
/// `deployments/scale` left out).
fn parse_resource_list(api_version: &str, list: &Value) -> Vec<ApiResource> {
    let (group, version) = crate::ids::split_api_version(api_version);
    list.get("resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let plural = r.get("name")?.as_str()?;
            if plural.contains('/') {
                return None;
            }
            Some(ApiResource {
                group: group.to_string(),
                version: version.to_string(),
                kind: r.get("kind")?.as_str()?.to_string(),
                plural: plural.to_string(),
                namespaced: r.get("namespaced").and_then(Value::as_bool).unwrap_or(false),
            })
        })
        .collect()
}

/// An error with its sources, for messages ("connection refused" is usually
/// three levels down).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// A URL with any `user:password@` removed.
fn without_credentials(url: &str) -> String {
    let url = url.trim_end_matches('/');
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}{}", &url[..scheme + 3], &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_for_namespaced_and_cluster_resources() {
        let deploy = ApiResource {
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            plural: "deployments".into(),
            namespaced: true,
        };
        assert_eq!(
            deploy.path(Some("shop"), Some("cart")),
            "/apis/apps/v1/namespaces/shop/deployments/cart"
        );
        let ns = ApiResource {
            group: String::new(),
            version: "v1".into(),
            kind: "Namespace".into(),
            plural: "namespaces".into(),
            namespaced: false,
        };
        assert_eq!(ns.path(Some("ignored"), None), "/api/v1/namespaces");
    }

    #[test]
    fn credentials_never_reach_messages() {
        assert_eq!(without_credentials("https://u:p@host:6443/"), "https://host:6443");
        assert_eq!(without_credentials("https://host:6443"), "https://host:6443");
    }
}
