//! plumb's Grafana provider: dashboards and folders kept in Git, compared
//! with a Grafana through its HTTP API, reconciled with `overwrite` and a
//! message naming the commit, and a simulator of that API ([`sim`]) for
//! tests, benchmarks and `plumb demo`.
//!
//! Modules: [`connection`] parses the `connection:` block, `desired` reads
//! dashboard files and folders, `client` talks HTTP (auth, retries),
//! `live` reads the scoped live state, `apis` finds dashboards another
//! tool manages through the `/apis` endpoints, [`normalize`] holds the canonical
//! forms (each rule citing Grafana's source), `apply` reconciles, `import`
//! writes live state as files. Users' documentation: `docs/grafana.md`.

mod apis;
mod apply;
mod client;
pub mod connection;
pub mod desired;
mod import;
mod live;
pub mod normalize;
pub mod sim;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use plumb_model::{ApplyChange, ChangeResult, Ctx, Desired, ListKey, Live, Pair, Provider, ProviderError};
use serde_json::Value;

pub use connection::Connection;

/// The name targets use in `provider:`.
pub const NAME: &str = "grafana";
/// Kind of dashboard resources (`dashboard/<uid>`).
pub const DASHBOARD_KIND: &str = "dashboard";
/// Kind of folder resources (`folder/<uid>`).
pub const FOLDER_KIND: &str = "folder";
/// Policy guard: when `true`, Git is authoritative inside the folders this
/// target manages, so a live dashboard there that Git lacks is a `delete`
/// (carried out only with `prune: true`) instead of `unmanaged`.
pub const GUARD_AUTHORITATIVE_FOLDERS: &str = "authoritative_folders";

/// `dashboard/<uid>`: uids are unique across an organisation, so the id
/// does not change when a dashboard moves between folders.
pub fn dashboard_id(uid: &str) -> String {
    format!("dashboard/{uid}")
}

/// `folder/<uid>`.
pub fn folder_id(uid: &str) -> String {
    format!("folder/{uid}")
}

/// Builds the provider from a target's `connection:` value. Credentials
/// are only named there and read from the environment at the first
/// request, so `plumb validate` works without them. `base` is unused: no
/// connection key is a path.
pub fn build(connection: &Value, _base: &Path) -> Result<GrafanaProvider, ProviderError> {
    Ok(GrafanaProvider {
        connection: Connection::parse(connection)?,
        provisioned: Mutex::new(HashMap::new()),
    })
}

/// The Grafana provider for one target.
#[derive(Debug)]
pub struct GrafanaProvider {
    connection: Connection,
    /// Dashboards managed elsewhere seen by the last live read (uid → who
    /// manages them): apply never saves or deletes them.
    provisioned: Mutex<HashMap<String, String>>,
}

impl GrafanaProvider {
    pub fn connection(&self) -> &Connection {
        &self.connection
    }
}

#[async_trait]
impl Provider for GrafanaProvider {
    /// Template variables and annotations are identified by name, so a
    /// change in one shows as `/dashboard/templating/list[name=job]/query`.
    fn list_keys(&self) -> Vec<ListKey> {
        vec![
            ListKey::new(DASHBOARD_KIND, "/dashboard/templating/list", &["name"]),
            ListKey::new(DASHBOARD_KIND, "/dashboard/annotations/list", &["name"]),
        ]
    }

    fn desired(&self, root: &Path, dir: &Path, _ctx: &Ctx) -> Result<Desired, ProviderError> {
        let resources = desired::read(root, dir)?;
        tracing::debug!(dir = %dir.display(), count = resources.len(), "read grafana desired state");
        Ok(Desired {
            resources,
            findings: Vec::new(),
        })
    }

    async fn live(&self, desired: &Desired, ctx: &Ctx) -> Result<Live, ProviderError> {
        let client = client::Client::new(&self.connection, ctx)?;
        let read = live::read(
            &client,
            self.connection.concurrency,
            &self.connection.namespace,
            desired,
            ctx,
        )
        .await?;
        if let Ok(mut p) = self.provisioned.lock() {
            *p = read.provisioned;
        }
        tracing::debug!(target_name = %ctx.target, count = read.live.resources.len(), "read grafana live state");
        Ok(read.live)
    }

    fn normalize(&self, pair: Pair<'_>) {
        let normalize_one: fn(&mut Value) = if pair.kind == FOLDER_KIND {
            normalize::folder_body
        } else {
            normalize::dashboard_body
        };
        let desired = pair.desired;
        let live = pair.live;
        if let Some(d) = desired.as_deref() {
            if let Some(l) = live {
                normalize_one(l);
                if pair.kind == DASHBOARD_KIND {
                    normalize::align_schema_version(d, l);
                }
            }
        } else if let Some(l) = live {
            normalize_one(l);
        }
        if let Some(d) = desired {
            normalize_one(d);
        }
    }

    async fn apply(&self, changes: &[ApplyChange], ctx: &Ctx) -> Result<Vec<ChangeResult>, ProviderError> {
        let client = client::Client::new(&self.connection, ctx)?;
        let provisioned = self.provisioned.lock().map(|p| p.clone()).unwrap_or_default();
        Ok(apply::apply(&client, changes, &provisioned, ctx).await)
    }

    async fn import(&self, live: &Live, out: &Path, _ctx: &Ctx) -> Result<Vec<PathBuf>, ProviderError> {
        let written = import::write(live, out)?;
        tracing::info!(out = %out.display(), files = written.len(), "imported grafana live state");
        Ok(written)
    }
}
