//! plumb's Kubernetes provider: manifests in Git against a live cluster.
//!
//! Desired state is every manifest below the target's directory (kustomize
//! directories rendered whole); live state is read through the `kube` crate
//! with one paginated list per kind and namespace. The comparison has two
//! steps: offline normalisation ([`normalize`], with the server's defaults in
//! [`defaults`] and field ownership from managedFields in [`managed`]), then
//! a server-side dry run for what still looks changed in a field Git sets
//! ([`confirm`]). Reconcile is server-side apply as field manager `plumb`.
//! The simulator for tests and `plumb demo` lives in [`sim`].
//!
//! Modules: [`connection`] (the `connection:` block), [`desired`] (files and
//! kustomize), [`ids`], [`keys`] (keyed lists), [`client`] (API access,
//! retries, discovery), [`live`] (listing, scope, changed_by), [`normalize`],
//! [`defaults`], [`managed`], [`quantity`], [`confirm`], [`reconcile`]
//! (apply and import), [`strays`] (hand-added fields apply removes).

pub mod client;
pub mod confirm;
pub mod connection;
pub mod defaults;
pub mod desired;
pub mod ids;
pub mod keys;
pub mod live;
pub mod managed;
pub mod normalize;
pub mod quantity;
pub mod reconcile;
pub mod sim;
pub mod strays;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use plumb_model::{
    ApplyChange, ChangeResult, ConfirmedBy, Ctx, Desired, ListKey, Live, Pair, Provider, ProviderError, Suspect,
    Verdict,
};
use serde_json::Value;
use tokio::sync::OnceCell;

pub use connection::Connection;

/// The name targets use in `provider:`.
pub const NAME: &str = "kubernetes";

/// Builds the provider from a target's `connection:` value; `base` (the
/// config file's directory) resolves a relative `kubeconfig`. Nothing is
/// contacted yet: the client is made on first use.
pub fn build(connection: &Value, base: &Path) -> Result<KubernetesProvider, ProviderError> {
    let connection = Connection::parse(connection, base)?;
    if let Some(path) = &connection.kubeconfig {
        if !path.is_file() {
            return Err(ProviderError::Config(format!(
                "kubernetes: kubeconfig {} does not exist",
                path.display()
            )));
        }
    }
    Ok(KubernetesProvider {
        connection,
        api: OnceCell::new(),
    })
}

/// The Kubernetes provider for one target.
pub struct KubernetesProvider {
    connection: Connection,
    api: OnceCell<client::Api>,
}

impl std::fmt::Debug for KubernetesProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesProvider")
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}

impl KubernetesProvider {
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The API client, connected on first use.
    pub async fn api(&self, ctx: &Ctx) -> Result<&client::Api, ProviderError> {
        self.api
            .get_or_try_init(|| client::Api::connect(&self.connection, ctx.timeout))
            .await
    }

    fn scope<'a>(&self, ctx: &'a Ctx) -> live::Scope<'a> {
        let mut opted_in = BTreeSet::new();
        if let Some(Value::Array(kinds)) = ctx.guards.get("unmanaged_cluster_kinds") {
            opted_in.extend(kinds.iter().filter_map(Value::as_str).map(str::to_string));
        }
        live::Scope {
            target: &ctx.target,
            namespaces: if self.connection.namespaces.is_empty() {
                Vec::new()
            } else {
                self.connection.namespaces.clone()
            },
            cluster_kinds_opted_in: opted_in,
        }
    }
}

#[async_trait]
impl Provider for KubernetesProvider {
    fn list_keys(&self) -> Vec<ListKey> {
        keys::list_keys()
    }

    fn desired(&self, root: &Path, dir: &Path, ctx: &Ctx) -> Result<Desired, ProviderError> {
        let options = desired::Options {
            default_namespace: &self.connection.namespace,
            timeout: ctx.timeout,
        };
        let resources = desired::read(root, dir, &options)?;
        tracing::debug!(dir = %dir.display(), count = resources.len(), "read Kubernetes manifests");
        Ok(Desired {
            resources,
            findings: Vec::new(),
        })
    }

    async fn live(&self, desired: &Desired, ctx: &Ctx) -> Result<Live, ProviderError> {
        let api = self.api(ctx).await?;
        let mut scope = self.scope(ctx);
        if desired.resources.is_empty() && scope.namespaces.is_empty() {
            scope.namespaces = vec![self.connection.namespace.clone()];
        }
        let (resources, findings) = live::read(api, desired, &scope, &self.connection.import_kinds).await?;
        tracing::debug!(target_name = %ctx.target, count = resources.len(), "read live Kubernetes objects");
        Ok(Live { resources, findings })
    }

    fn normalize(&self, pair: Pair<'_>) {
        normalize::normalize_pair(pair.kind, pair.desired, pair.live);
    }

    async fn confirm(&self, suspects: &[Suspect<'_>], ctx: &Ctx) -> Result<Vec<Verdict>, ProviderError> {
        let api = match self.api(ctx).await {
            Ok(api) => api,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the cluster to confirm; changes left unconfirmed");
                return Ok(suspects
                    .iter()
                    .map(|_| Verdict::Confirmed(ConfirmedBy::Unconfirmed))
                    .collect());
            }
        };
        let mut verdicts = Vec::with_capacity(suspects.len());
        for suspect in suspects {
            verdicts.push(confirm::confirm_one(api, suspect, &ctx.target).await);
        }
        Ok(verdicts)
    }

    async fn apply(&self, changes: &[ApplyChange], ctx: &Ctx) -> Result<Vec<ChangeResult>, ProviderError> {
        let api = self.api(ctx).await?;
        let options = reconcile::ApplyOptions {
            force: ctx
                .guards
                .get("force_conflicts")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            keep: match ctx.guards.get("keep_field_managers") {
                Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).map(str::to_string).collect(),
                _ => BTreeSet::new(),
            },
        };
        Ok(reconcile::apply(api, changes, &ctx.target, &options).await)
    }

    async fn import(&self, live: &Live, out: &Path, _ctx: &Ctx) -> Result<Vec<PathBuf>, ProviderError> {
        reconcile::import(live, out).await
    }
}
