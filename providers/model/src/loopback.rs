//! What the API simulators of the provider crates share: serving a router
//! on a free loopback port until dropped, and the sub-path a simulated API
//! may be mounted under (GitHub Enterprise's `/api/v3`, Grafana's
//! `root_url` sub-path). Behind the `loopback` feature, so the core and
//! providers without a simulator keep this crate free of axum and tokio.

use std::net::SocketAddr;

use tokio::sync::oneshot;

/// A router served on 127.0.0.1 with a port the OS picked. Dropping it
/// stops the server (in-flight requests finish).
pub struct LoopbackServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl LoopbackServer {
    /// Binds 127.0.0.1:0 and serves `app` on the current Tokio runtime;
    /// `name` labels the log line if serving ends with an error.
    pub async fn start(name: &'static str, app: axum::Router) -> std::io::Result<LoopbackServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, simulator = name, "simulator stopped");
            }
        });
        tracing::debug!(%addr, simulator = name, "simulator listening");
        Ok(LoopbackServer { addr, stop: Some(stop) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// `Some("api/v3/")` → `"/api/v3"`; `None`, `""` and `"/"` → `""` (no
/// sub-path), so a URL is always `http://{addr}{sub_path}`.
pub fn sub_path(configured: Option<&str>) -> String {
    configured
        .map(|p| format!("/{}", p.trim_matches('/')))
        .filter(|p| p != "/")
        .unwrap_or_default()
}

/// `api` as served under `sub_path` (as [`sub_path`] spells it).
pub fn mounted(sub_path: &str, api: axum::Router) -> axum::Router {
    if sub_path.is_empty() {
        api
    } else {
        axum::Router::new().nest(sub_path, api)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_paths_are_spelled_one_way() {
        assert_eq!(sub_path(None), "");
        assert_eq!(sub_path(Some("")), "");
        assert_eq!(sub_path(Some("/")), "");
        assert_eq!(sub_path(Some("api/v3/")), "/api/v3");
        assert_eq!(sub_path(Some("/grafana")), "/grafana");
    }

    #[tokio::test]
    async fn serves_until_dropped() {
        let app = axum::Router::new().route("/ping", axum::routing::get(|| async { "pong" }));
        let server = LoopbackServer::start("test", mounted("/x", app)).await.unwrap();
        let addr = server.addr();
        let ask = |path: &'static str| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
                .await?;
            let mut out = String::new();
            s.read_to_string(&mut out).await?;
            Ok::<String, std::io::Error>(out)
        };
        let answer = ask("/x/ping").await.unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("pong"),
            "{answer}"
        );
        assert!(ask("/ping").await.unwrap().starts_with("HTTP/1.1 404"));
        drop(server);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(ask("/x/ping").await.is_err(), "the listener is closed once dropped");
    }
}
