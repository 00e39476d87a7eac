//! serve's connection handling: HTTP/1.1 with a bound on everything a
//! client can hold. A request head must arrive whole within
//! `header_timeout` (hyper's own timer, so a header line every few seconds
//! does not keep a connection alive), a connection with no request in
//! flight is closed after `idle_timeout`, and at most `max_connections`
//! are open at once. At the cap, the connection that has waited longest
//! without a request in flight is closed to make room (once it has had a
//! quarter of a second), so a flood of slow or idle clients cannot keep
//! `/metrics` and `/readyz` from being answered; while every connection is
//! busy with a request, new ones wait in the kernel's queue. Accept errors
//! (out of file descriptors) back off instead of spinning.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt as _;

/// The bounds, from `server:` (defaults in docs/serve.md).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
        }
    }
}

/// The number of file descriptors this process may open, where the system
/// says: the connection cap stays below it, so accepting never fails for
/// want of one.
fn descriptor_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The cap actually used: the configured one, but at most three quarters
/// of the descriptor limit (the rest is for Git, live APIs, files).
pub fn effective_cap(configured: usize) -> usize {
    let cap = match descriptor_limit() {
        Some(limit) => configured.min(limit * 3 / 4),
        None => configured,
    };
    cap.max(8)
}

struct Connection {
    accepted: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `accepted` of the last request's end.
    last_active_ms: AtomicU64,
    abort: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Connection {
    fn idle_since(&self) -> Option<Instant> {
        (self.in_flight.load(Ordering::SeqCst) == 0)
            .then(|| self.accepted + Duration::from_millis(self.last_active_ms.load(Ordering::SeqCst)))
    }

    fn close(&self) {
        if let Some(handle) = self.abort.lock().unwrap_or_else(|p| p.into_inner()).take() {
            handle.abort();
        }
    }
}

type Table = Arc<Mutex<HashMap<u64, Arc<Connection>>>>;

fn lock(table: &Table) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
    table.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serves `app` on `listener` until `shutdown` turns true; then stops
/// accepting, closes idle connections and waits up to `grace` for requests
/// in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let cap = effective_cap(limits.max_connections);
    let table: Table = Arc::new(Mutex::new(HashMap::new()));
    let mut next_id = 0u64;
    let sweeper = tokio::spawn(sweep(table.clone(), limits));
    loop {
        // At the cap, wait for room before accepting: new connections wait
        // in the kernel's queue instead of being taken and dropped.
        let room = tokio::select! {
            _ = wait_for_room(&table, cap) => true,
            _ = shutdown.wait_for(|stop| *stop) => false,
        };
        if !room {
            break;
        }
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        next_id += 1;
        let id = next_id;
        let connection = Arc::new(Connection {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
            abort: Mutex::new(None),
        });
        let state = connection.clone();
        let app = app.clone();
        let service = tower::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let state = state.clone();
            let app = app.clone();
            state.in_flight.fetch_add(1, Ordering::SeqCst);
            async move {
                let response = app.oneshot(request.map(axum::body::Body::new)).await;
                state
                    .last_active_ms
                    .store(state.accepted.elapsed().as_millis() as u64, Ordering::SeqCst);
                state.in_flight.fetch_sub(1, Ordering::SeqCst);
                response
            }
        });
        let table_for_task = table.clone();
        lock(&table).insert(id, connection.clone());
        let task = tokio::spawn(async move {
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "connection ended");
            }
            lock(&table_for_task).remove(&id);
        });
        *connection.abort.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
    }
    sweeper.abort();
    // Stop: idle connections go at once, requests in flight get the grace.
    let deadline = Instant::now() + grace;
    loop {
        let open: Vec<Arc<Connection>> = lock(&table).values().cloned().collect();
        let mut busy = 0;
        for c in &open {
            if c.idle_since().is_some() {
                c.close();
            } else {
                busy += 1;
            }
        }
        if busy == 0 || Instant::now() > deadline {
            for c in &open {
                c.close();
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long a connection is safe from being closed to make room: a client
/// that sends its request at once is served within this even while slow
/// clients flood the cap, and the flood's churn is paced by it.
const MIN_AGE: Duration = Duration::from_millis(250);

/// Returns once a connection may be accepted: below the cap, or after
/// closing the connection that has waited longest without a request in
/// flight, once it is at least [`MIN_AGE`] idle. While every connection is
/// busy with a request, waits.
async fn wait_for_room(table: &Table, cap: usize) {
    loop {
        let wait = {
            let connections = lock(table);
            if connections.len() < cap {
                return;
            }
            let oldest_idle = connections
                .iter()
                .filter_map(|(id, c)| c.idle_since().map(|since| (since, *id, c.clone())))
                .min_by_key(|(since, id, _)| (*since, *id));
            drop(connections);
            match oldest_idle {
                Some((since, id, connection)) if since.elapsed() >= MIN_AGE => {
                    connection.close();
                    lock(table).remove(&id);
                    return;
                }
                Some((since, _, _)) => MIN_AGE.saturating_sub(since.elapsed()),
                None => Duration::from_millis(10),
            }
        };
        tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
    }
}

/// Closes connections idle longer than `idle_timeout`, and any still
/// waiting for a first request head past `header_timeout` (hyper's timer
/// does this too; this is the backstop).
async fn sweep(table: Table, limits: Limits) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = Instant::now();
        let expired: Vec<(u64, Arc<Connection>)> = lock(&table)
            .iter()
            .filter(|(_, c)| {
                c.idle_since().is_some_and(|since| {
                    let first_request_pending = c.last_active_ms.load(Ordering::SeqCst) == 0;
                    let limit = if first_request_pending {
                        limits.header_timeout + Duration::from_secs(1)
                    } else {
                        limits.idle_timeout
                    };
                    now.duration_since(since) > limit
                })
            })
            .map(|(id, c)| (*id, c.clone()))
            .collect();
        for (id, c) in expired {
            c.close();
            lock(&table).remove(&id);
        }
    }
}
