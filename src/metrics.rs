//! The plan gauges (docs/plan-format.md, "Metrics file") in the Prometheus text format, for `plan
//! --metrics-file` (node_exporter's textfile collector) and, later, serve's
//! `/metrics`. Target labels are the union over all targets, empty where a
//! target lacks one, so every series of a metric has the same label names.

use std::io::Write as _;
use std::path::Path;

use prometheus::{Encoder, GaugeVec, Opts, Registry, TextEncoder};

use crate::config::Config;
use crate::plan::Plan;
use crate::state::State;

/// Renders the gauges for `plan` in the text exposition format.
pub fn gauges(config: &Config, plan: &Plan, state: &State) -> Result<String, prometheus::Error> {
    let registry = Registry::new();
    let extra = config.target_label_names();
    let with = |base: &[&str]| -> Vec<String> {
        base.iter()
            .map(|s| s.to_string())
            .chain(extra.iter().cloned())
            .collect()
    };
    let gauge = |name: &str, help: &str, labels: &[String]| -> Result<GaugeVec, prometheus::Error> {
        let names: Vec<&str> = labels.iter().map(String::as_str).collect();
        let g = GaugeVec::new(Opts::new(name, help), &names)?;
        registry.register(Box::new(g.clone()))?;
        Ok(g)
    };
    let exit_code = gauge(
        "plumb_plan_exit_code",
        "Exit code of the last plan: 0 in sync, 1 error, 2 drift.",
        &with(&["target", "provider"]),
    )?;
    let drifted = gauge(
        "plumb_drifted_resources",
        "Resources that drift, by action.",
        &with(&["target", "provider", "action"]),
    )?;
    let managed = gauge(
        "plumb_managed_resources",
        "Desired resources of the target.",
        &with(&["target", "provider"]),
    )?;
    let findings = gauge(
        "plumb_findings",
        "Findings of the last plan.",
        &with(&["target", "provider"]),
    )?;
    let drift_since = gauge(
        "plumb_drift_since_timestamp_seconds",
        "When the current drift was first seen; 0 when in sync.",
        &with(&["target"]),
    )?;
    let last_run = gauge(
        "plumb_last_run_timestamp_seconds",
        "When the target was last audited.",
        &with(&["target"]),
    )?;
    let last_success = gauge(
        "plumb_last_success_timestamp_seconds",
        "When the target was last audited without error.",
        &with(&["target"]),
    )?;
    let source_success = gauge(
        "plumb_source_last_success_timestamp_seconds",
        "When the desired state was last fetched.",
        &[],
    )?;
    let source_info = gauge(
        "plumb_source_info",
        "The source audited.",
        &["url".into(), "ref".into(), "commit".into()],
    )?;
    let build_info = gauge("plumb_build_info", "plumb's version.", &["version".into()])?;
    let ack_expiry = gauge(
        "plumb_acknowledgement_expiry_timestamp_seconds",
        "When an acknowledgement of known drift lapses (its `until`), for the expiring-soon alert.",
        &with(&["target", "id"]),
    )?;

    for t in &plan.targets {
        let spec = config.target(&t.name);
        let extra_values: Vec<String> = extra
            .iter()
            .map(|k| spec.and_then(|s| s.labels.get(k)).cloned().unwrap_or_default())
            .collect();
        let values = |base: &[&str]| -> Vec<String> {
            base.iter()
                .map(|s| s.to_string())
                .chain(extra_values.iter().cloned())
                .collect()
        };
        let set = |g: &GaugeVec, base: &[&str], v: f64| {
            let vals = values(base);
            let refs: Vec<&str> = vals.iter().map(String::as_str).collect();
            g.with_label_values(&refs).set(v);
        };
        set(&exit_code, &[&t.name, &t.provider], t.exit_code as f64);
        for (action, n) in [
            ("create", t.summary.create),
            ("update", t.summary.update),
            ("delete", t.summary.delete),
            ("unmanaged", t.summary.unmanaged),
        ] {
            set(&drifted, &[&t.name, &t.provider, action], n as f64);
        }
        let desired = t.summary.in_sync + t.summary.update + t.summary.create;
        set(&managed, &[&t.name, &t.provider], desired as f64);
        set(&findings, &[&t.name, &t.provider], t.findings.len() as f64);
        let st = state.targets.get(&t.name).cloned().unwrap_or_default();
        set(&drift_since, &[&t.name], st.drift_since.unwrap_or(0) as f64);
        set(&last_run, &[&t.name], st.last_run.unwrap_or(0) as f64);
        set(&last_success, &[&t.name], st.last_success.unwrap_or(0) as f64);
        // `until` is read as in the policy (a date means the end of that day
        // in the target's timezone); one series per acknowledged id, the
        // latest `until` when several rules cover it.
        let tz = spec
            .and_then(|s| s.timezone.as_deref())
            .and_then(|z| z.parse().ok())
            .unwrap_or(chrono_tz::UTC);
        let mut expiries: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
        for ack in &t.acknowledged {
            if let Ok(until) = crate::policy::parse_until(&ack.until, tz) {
                let e = expiries.entry(ack.id.as_str()).or_insert(i64::MIN);
                *e = (*e).max(until.timestamp());
            }
        }
        for (id, until) in expiries {
            set(&ack_expiry, &[&t.name, id], until as f64);
        }
    }
    source_success
        .with_label_values(&[] as &[&str])
        .set(state.source_last_success.unwrap_or(0) as f64);
    source_info
        .with_label_values(&[
            plan.source.url.as_str(),
            plan.source.reference.as_deref().unwrap_or(""),
            plan.source.commit.as_deref().unwrap_or(""),
        ])
        .set(1.0);
    build_info.with_label_values(&[plan.plumb_version.as_str()]).set(1.0);

    let mut buffer = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut buffer)?;
    Ok(String::from_utf8_lossy(&buffer).into_owned())
}

/// Writes `text` to `path` through a temporary file in the same directory
/// and a rename, so a reader never sees half a file.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
