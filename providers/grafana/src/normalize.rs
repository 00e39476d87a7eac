//! Canonical forms for comparison: what Grafana (or the browser that saved
//! a dashboard) fills in by itself is removed from both sides, and values
//! that mean the same are spelled alike. Every rule names its source.

use serde_json::{Map, Value};

/// Top-level dashboard keys that are not drift.
/// - `id`, `version`: assigned by Grafana's store on every save
///   (pkg/services/dashboards/database/database.go `saveDashboard` writes
///   `dash.Data["id"]` and `["version"]`; dashboard.md: "id = null to create
///   a new dashboard").
/// - `iteration`: a timestamp the browser bumps on every change
///   (public/app/features/dashboard/state/DashboardModel.ts), meaningless
///   outside that browser session.
/// - `__inputs`, `__requires`, `__elements`: added by "Export for sharing
///   externally" (public/app/features/dashboard/components/DashExportModal/
///   DashboardExporter.ts `makeExportable`) and consumed by import; Grafana
///   does not keep them meaningfully.
const SERVER_KEYS: [&str; 6] = ["id", "version", "iteration", "__inputs", "__requires", "__elements"];

/// The uid of the General (root) folder, however an endpoint spells it:
/// `meta.folderUid` is `""` (pkg/api/dashboard.go), search hits leave it out,
/// the folder APIs and search parameters say `general`
/// (pkg/services/folder/model.go `GeneralFolderUID`), and the old
/// `folderId` says `0`. All become `""`.
pub fn folder_uid(value: &Value) -> String {
    match value {
        Value::String(s) if s == "general" || s == "0" => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) if n.as_i64() == Some(0) => String::new(),
        _ => String::new(),
    }
}

/// Removes `null` members of objects, recursively. The browser saves
/// dashboards through `sortedDeepCloneWithoutNulls`
/// (public/app/core/utils/object.ts), so a dashboard saved in the UI lacks
/// the keys a file may spell as `null`: both mean "not set".
pub fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            for v in map.values_mut() {
                drop_nulls(v);
            }
        }
        Value::Array(items) => {
            for v in items {
                drop_nulls(v);
            }
        }
        _ => {}
    }
}

/// Panel ids are assigned by the browser to keep panels unique within one
/// dashboard (DashboardModel.ts `ensurePanelsHaveUniqueIds`; the scenes
/// serialiser renumbers them), so they differ between a file and what a
/// save stores without anything having changed. Library panels keep only
/// their reference and position: the rest is expanded from the library
/// element (DashboardExporter.ts writes library panels as
/// `{gridPos, id, libraryPanel: {uid, name}}`), and the element is not part
/// of the dashboard.
fn normalize_panels(panels: &mut Value) {
    let Value::Array(items) = panels else {
        return;
    };
    for panel in items {
        let Value::Object(map) = panel else {
            continue;
        };
        map.remove("id");
        if let Some(Value::Object(lib)) = map.get("libraryPanel") {
            let mut reference = Map::new();
            for key in ["uid", "name"] {
                if let Some(v) = lib.get(key) {
                    reference.insert(key.to_string(), v.clone());
                }
            }
            let grid = map.get("gridPos").cloned();
            map.clear();
            map.insert("libraryPanel".into(), Value::Object(reference));
            if let Some(g) = grid {
                map.insert("gridPos".into(), g);
            }
            continue;
        }
        // Rows hold their collapsed panels in `panels`.
        if let Some(nested) = map.get_mut("panels") {
            normalize_panels(nested);
        }
    }
}

/// Canonical form of one dashboard model.
pub fn dashboard_model(model: &mut Value) {
    let Value::Object(map) = model else {
        return;
    };
    for key in SERVER_KEYS {
        map.remove(key);
    }
    if let Some(panels) = map.get_mut("panels") {
        normalize_panels(panels);
    }
    // Dashboards older than schemaVersion 16 keep panels in `rows`.
    if let Some(Value::Array(rows)) = map.get_mut("rows") {
        for row in rows {
            if let Some(panels) = row.get_mut("panels") {
                normalize_panels(panels);
            }
        }
    }
    drop_nulls(model);
}

/// Canonical form of a dashboard resource body `{folderUid, dashboard}`.
pub fn dashboard_body(body: &mut Value) {
    if let Value::Object(map) = body {
        let folder = map.get("folderUid").map(folder_uid).unwrap_or_default();
        map.insert("folderUid".into(), Value::String(folder));
        if let Some(model) = map.get_mut("dashboard") {
            dashboard_model(model);
        }
    }
}

/// Canonical form of a folder body `{uid, title, parentUid}`: a folder at
/// the root has no `parentUid` (folder.md: only nested folders carry it).
pub fn folder_body(body: &mut Value) {
    if let Value::Object(map) = body {
        let root = map.get("parentUid").is_none_or(|p| folder_uid(p).is_empty());
        if root {
            map.remove("parentUid");
        }
    }
    drop_nulls(body);
}

/// `schemaVersion` of a dashboard body, if any.
pub fn schema_version(body: &Value) -> Option<&Value> {
    body.get("dashboard").and_then(|d| d.get("schemaVersion"))
}

/// A `schemaVersion` that differs on its own is not drift: the browser
/// migrates every dashboard to its own schema when it loads it
/// (public/app/features/dashboard/state/DashboardMigrator.ts), so a file
/// written for an older Grafana and the stored copy legitimately differ.
/// The live value is aligned with the desired one for the comparison; the
/// provider reports the difference as a warning finding instead.
pub fn align_schema_version(desired: &Value, live: &mut Value) {
    let Some(wanted) = schema_version(desired).cloned() else {
        if let Some(Value::Object(d)) = live.get_mut("dashboard") {
            d.remove("schemaVersion");
        }
        return;
    };
    if let Some(Value::Object(d)) = live.get_mut("dashboard") {
        d.insert("schemaVersion".into(), wanted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn general_folder_spellings_are_one() {
        for v in [json!(""), json!("general"), json!(0), json!("0"), Value::Null] {
            assert_eq!(folder_uid(&v), "", "{v}");
        }
        assert_eq!(folder_uid(&json!("abc")), "abc");
    }

    #[test]
    fn server_fields_panel_ids_and_nulls_go() {
        let mut a = json!({"folderUid": "general", "dashboard": {
            "id": 3, "version": 7, "iteration": 123, "uid": "u", "title": "T", "__inputs": [],
            "description": null,
            "panels": [{"id": 1, "type": "row", "panels": [{"id": 9, "title": "x", "datasource": null}]},
                       {"id": 2, "gridPos": {"x": 0}, "libraryPanel": {"uid": "L", "name": "N", "model": {}}, "title": "expanded"}]}});
        dashboard_body(&mut a);
        assert_eq!(
            a,
            json!({"folderUid": "", "dashboard": {"uid": "u", "title": "T",
                "panels": [{"type": "row", "panels": [{"title": "x"}]},
                           {"gridPos": {"x": 0}, "libraryPanel": {"uid": "L", "name": "N"}}]}})
        );
    }

    #[test]
    fn a_changed_query_survives_normalisation() {
        let mut a = json!({"dashboard": {"panels": [{"id": 1, "targets": [{"expr": "up"}]}]}});
        let mut b = json!({"dashboard": {"panels": [{"id": 5, "targets": [{"expr": "up == 0"}]}]}});
        dashboard_body(&mut a);
        dashboard_body(&mut b);
        assert_ne!(a, b);
    }
}
