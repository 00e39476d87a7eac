//! Dashboards another tool manages through Grafana's newer Kubernetes-style
//! `/apis` endpoints (Git Sync, Terraform, kubectl, plugins): found by the
//! `grafana.app/managedBy` annotation on
//! `/apis/dashboard.grafana.app/<version>/namespaces/<ns>/dashboards`, so
//! the live read reports them as "managed elsewhere" and apply never saves,
//! deletes or prunes them. A Grafana without `/apis` (before 12) answers
//! 404 and the read goes on with the legacy `/api` alone.

use std::collections::{BTreeMap, HashSet};

use plumb_model::ProviderError;
use serde_json::Value;

use crate::client::Client;

/// The API group of dashboards
/// (https://grafana.com/docs/grafana/latest/developer-resources/api-reference/http-api/dashboard/).
pub const GROUP: &str = "dashboard.grafana.app";
/// Which system owns a resource (`AnnoKeyManagerKind`, grafana/grafana
/// pkg/apimachinery/utils/meta.go): `repo`, `terraform`, `kubectl`,
/// `plugin`, `classic-file-provisioning`, … "treat managed as any value
/// being present" (public/app/features/provisioning/README.md).
pub const ANNO_MANAGED_BY: &str = "grafana.app/managedBy";
/// The manager's identity, e.g. the repository name (`AnnoKeyManagerIdentity`).
pub const ANNO_MANAGER_ID: &str = "grafana.app/managerId";
/// The file the resource comes from (`AnnoKeySourcePath`).
pub const ANNO_SOURCE_PATH: &str = "grafana.app/sourcePath";

/// Versions plumb reads, best first: the metadata it needs is the same in
/// every version, and the v1 family serves every stored dashboard without
/// a schema conversion (v2 converts, and can fail on old dashboards).
const KNOWN_VERSIONS: [&str; 3] = ["v1", "v1beta1", "v0alpha1"];
/// Items per list page (`limit`, then `continue` until it is empty:
/// https://kubernetes.io/docs/reference/using-api/api-concepts/#retrieving-large-results-sets-in-chunks).
pub const LIST_LIMIT: usize = 500;
const MAX_PAGES: usize = 10_000;
/// Asks for metadata only, and takes the full objects from a server that
/// cannot: the Accept list Kubernetes' own metadata client sends
/// (k8s.io/client-go metadata/metadata.go `ConfigFor`), minus protobuf.
pub const METADATA_ONLY: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";

/// Who manages one dashboard, from its annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manager {
    pub kind: String,
    pub identity: Option<String>,
    pub source_path: Option<String>,
}

impl Manager {
    /// For a finding or a refusal: "managed by Git Sync repository
    /// `dashboards` (grafana.app/managedBy: repo, file team/x.json)".
    pub fn describe(&self) -> String {
        let id = self.identity.as_deref().map(|i| format!(" {i}")).unwrap_or_default();
        let who = match self.kind.as_str() {
            "repo" => format!("managed by Git Sync repository{id}"),
            "terraform" => "managed by Terraform".to_string(),
            "kubectl" => "managed by kubectl".to_string(),
            "plugin" => format!("managed by plugin{id}"),
            "classic-file-provisioning" => format!("provisioned into Grafana from a file{id}"),
            other => format!("managed by {other}{id}"),
        };
        let file = self
            .source_path
            .as_deref()
            .map(|p| format!(", file {p}"))
            .unwrap_or_default();
        format!("{who} ({ANNO_MANAGED_BY}: {}{file})", self.kind)
    }
}

/// The version of the dashboard group to read, from the group's discovery
/// document (`GET /apis/dashboard.grafana.app`, a Kubernetes `APIGroup`
/// with `versions` and `preferredVersion`); `None` when it lists nothing.
fn pick_version(group: &Value) -> Option<String> {
    let served: HashSet<&str> = group
        .get("versions")
        .and_then(Value::as_array)?
        .iter()
        .filter_map(|v| v.get("version").and_then(Value::as_str))
        .collect();
    KNOWN_VERSIONS
        .iter()
        .find(|v| served.contains(**v))
        .map(|v| v.to_string())
        .or_else(|| {
            group
                .pointer("/preferredVersion/version")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
}

/// Managed dashboards by uid (`metadata.name`), or `None` when this Grafana
/// has no `/apis` for dashboards (it answers 404: pkg/api/index.go
/// `NotFoundHandler` for an unknown API path).
pub async fn managed_dashboards(
    client: &Client,
    namespace: &str,
) -> Result<Option<BTreeMap<String, Manager>>, ProviderError> {
    let group_path = format!("apis/{GROUP}");
    let group = match client.get(&group_path, &[]).await {
        Ok(g) => g,
        Err(fail) if fail.status == Some(404) => {
            tracing::debug!("no /apis/{GROUP} on this Grafana; managed dashboards come from the legacy API only");
            return Ok(None);
        }
        Err(fail) => return Err(fail.error),
    };
    let Some(version) = pick_version(&group) else {
        tracing::debug!("/apis/{GROUP} lists no version; reading the legacy API only");
        return Ok(None);
    };
    let list_path = format!("apis/{GROUP}/{version}/namespaces/{namespace}/dashboards");
    let mut managed = BTreeMap::new();
    let mut token = String::new();
    let mut seen_tokens = HashSet::new();
    for _ in 0..MAX_PAGES {
        let mut query = vec![("limit", LIST_LIMIT.to_string())];
        if !token.is_empty() {
            query.push(("continue", token.clone()));
        }
        let page = match client.get_accepting(&list_path, &query, METADATA_ONLY).await {
            Ok(p) => p,
            Err(fail) if fail.status == Some(404) => {
                let request = format!("GET {}", client.url(&list_path, &query)?);
                return Err(ProviderError::Api {
                    request,
                    status: Some(404),
                    message: format!(
                        "Grafana serves {GROUP} but not this namespace's dashboards; is connection.namespace ({namespace:?}) the organisation's namespace (default, org-<id>, stacks-<id>)?"
                    ),
                });
            }
            Err(fail) => return Err(fail.error),
        };
        let Some(items) = page.get("items").and_then(Value::as_array) else {
            return Err(ProviderError::Api {
                request: format!("GET {}", client.url(&list_path, &query)?),
                status: Some(200),
                message: "expected a Kubernetes list with `items`".into(),
            });
        };
        for item in items {
            let meta = item.get("metadata").unwrap_or(&Value::Null);
            let Some(name) = meta.get("name").and_then(Value::as_str) else {
                continue;
            };
            let annotation = |key: &str| {
                meta.pointer(&format!("/annotations/{}", key.replace('~', "~0").replace('/', "~1")))
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            };
            if let Some(kind) = annotation(ANNO_MANAGED_BY) {
                managed.insert(
                    name.to_string(),
                    Manager {
                        kind,
                        identity: annotation(ANNO_MANAGER_ID),
                        source_path: annotation(ANNO_SOURCE_PATH),
                    },
                );
            }
        }
        token = page
            .pointer("/metadata/continue")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if token.is_empty() {
            tracing::debug!(version = %version, managed = managed.len(), "read managed dashboards from /apis");
            return Ok(Some(managed));
        }
        if !seen_tokens.insert(token.clone()) {
            return Err(ProviderError::Other(format!(
                "GET {list_path}: the server repeated a continue token; giving up"
            )));
        }
    }
    Err(ProviderError::Other(format!(
        "GET {list_path}: more than {MAX_PAGES} pages; giving up"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn picks_the_v1_family_then_the_preferred_version() {
        let g = json!({"versions": [{"version": "v2beta1"}, {"version": "v1beta1"}, {"version": "v0alpha1"}],
                       "preferredVersion": {"version": "v2beta1"}});
        assert_eq!(pick_version(&g).as_deref(), Some("v1beta1"));
        let g = json!({"versions": [{"version": "v3"}], "preferredVersion": {"version": "v3"}});
        assert_eq!(pick_version(&g).as_deref(), Some("v3"));
        assert_eq!(pick_version(&json!({"message": "Not found"})), None);
    }

    #[test]
    fn describes_the_manager() {
        let m = Manager {
            kind: "repo".into(),
            identity: Some("dashboards".into()),
            source_path: Some("team/x.json".into()),
        };
        assert_eq!(
            m.describe(),
            "managed by Git Sync repository dashboards (grafana.app/managedBy: repo, file team/x.json)"
        );
        let m = Manager {
            kind: "terraform".into(),
            identity: None,
            source_path: None,
        };
        assert_eq!(m.describe(), "managed by Terraform (grafana.app/managedBy: terraform)");
    }
}
