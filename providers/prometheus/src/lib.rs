//! plumb's Prometheus rules provider: alerting and recording rules kept in
//! Git (rule files and Prometheus Operator `PrometheusRule` objects),
//! audited against a Prometheus server (`/api/v1/rules`) or a Mimir,
//! Cortex or Loki ruler, compared by meaning rather than spelling.
//!
//! Modules: [`connection`] (the `connection:` block), [`rules`] (rule files:
//! parsing, promtool's checks, ids, documents, YAML), [`promql`] (canonical
//! PromQL and durations), [`logql`] (Loki expressions, compared as text),
//! [`templates`] (offline check of alert templates), `http` (retrying
//! client), [`prometheus`] and [`ruler`] (the live backends), [`sim`] (a
//! ruler API simulator for tests and `plumb demo`). User documentation:
//! `docs/prometheus.md`.

pub mod connection;
mod http;
pub mod logql;
pub mod prometheus;
pub mod promql;
pub mod ruler;
pub mod rules;
pub mod sim;
pub mod templates;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use plumb_model::{
    Action, ApplyChange, Authority, ChangeResult, Ctx, Desired, Finding, Live, Outcome, Pair, Provider, ProviderError,
    Resource, Severity,
};
use serde_json::Value;

pub use connection::{Backend, Connection, RulerFlavour};
use http::Client;
use prometheus::Version;
use rules::{Group, Namespace, KIND_ALERT, KIND_GROUP, KIND_RECORD};

/// The name targets use in `provider:`.
pub const NAME: &str = "prometheus";

/// Builds the provider from a target's `connection:`; `base` is the
/// directory of `plumb.yaml` (a relative `rules_dir` is taken from there).
pub fn build(connection: &Value, base: &Path) -> Result<PrometheusProvider, ProviderError> {
    let connection = Connection::parse(connection, base)?;
    Ok(PrometheusProvider {
        connection,
        aliases: Mutex::new(HashMap::new()),
    })
}

/// The provider for one target.
#[derive(Debug)]
pub struct PrometheusProvider {
    connection: Connection,
    /// Namespace → Prometheus Operator file-name prefixes, remembered from
    /// the last `desired` (documents do not carry them) so `live` can map
    /// operator-written files back to the Git file.
    aliases: Mutex<HashMap<String, Vec<String>>>,
}

/// Group by namespace and name, from desired documents.
fn desired_groups(desired: &[Resource]) -> BTreeMap<(String, String), Group> {
    desired
        .iter()
        .filter(|r| r.kind == KIND_GROUP)
        .map(|r| {
            let body = r.body();
            let ns = str_of(&body, "namespace");
            let (group, _) = rules::group_from_body(&body);
            ((ns, group.name.clone()), group)
        })
        .collect()
}

fn str_of(body: &Value, key: &str) -> String {
    body.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

impl PrometheusProvider {
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    fn client(&self, ctx: &Ctx) -> Result<Client, ProviderError> {
        let headers = match &self.connection.backend {
            Backend::Ruler {
                tenant: Some(tenant), ..
            } => vec![("X-Scope-OrgID", tenant.clone())],
            _ => Vec::new(),
        };
        Client::new(
            self.connection.timeout.min(ctx.timeout),
            self.connection.retries,
            headers,
        )
    }

    fn is_ruler(&self) -> bool {
        matches!(self.connection.backend, Backend::Ruler { .. })
    }

    fn dialect(&self) -> rules::Dialect {
        match &self.connection.backend {
            Backend::Prometheus { .. } => rules::Dialect::Prometheus,
            Backend::Ruler { flavour, .. } => flavour.dialect(),
        }
    }

    /// The ruler API of a ruler target.
    fn ruler<'a>(&self, client: &'a Client) -> Option<ruler::Ruler<'a>> {
        match &self.connection.backend {
            Backend::Ruler {
                url,
                flavour,
                config_path,
                state_path,
                ..
            } => Some(ruler::Ruler {
                client,
                config_url: format!("{url}{config_path}"),
                state_url: format!("{url}{state_path}"),
                dialect: flavour.dialect(),
            }),
            Backend::Prometheus { .. } => None,
        }
    }

    /// Namespace names known from the last `desired`, with their aliases.
    fn desired_namespaces(&self, desired: &Desired) -> Vec<Namespace> {
        let aliases = self.aliases.lock().map(|a| a.clone()).unwrap_or_default();
        let mut names: Vec<String> = desired
            .resources
            .iter()
            .filter(|r| r.kind == KIND_GROUP)
            .map(|r| str_of(&r.body(), "namespace"))
            .collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| Namespace {
                aliases: aliases.get(&name).cloned().unwrap_or_default(),
                name,
                ..Namespace::default()
            })
            .collect()
    }

    async fn live_prometheus(
        &self,
        url: &str,
        rules_dir: Option<&Path>,
        desired: &Desired,
        client: &Client,
    ) -> Result<Live, ProviderError> {
        let version = prometheus::version(client, url).await?;
        let global = prometheus::evaluation_interval(client, url).await?;
        let data = prometheus::rules(client, url).await?;
        let wanted = desired_groups(&desired.resources);
        let known = self.desired_namespaces(desired);
        let mut namespaces: BTreeMap<String, (Namespace, bool)> = BTreeMap::new();
        let mut health = Vec::new();
        for api in &data.groups {
            let (ns, owned) = prometheus::map_file(&api.file, rules_dir, &known);
            let group = prometheus::group_of(api, wanted.get(&(ns.clone(), api.name.clone())), global);
            let keys = rules::rule_keys(&group);
            for (rule, key) in api.rules.iter().zip(&keys) {
                if rule.health == "err" {
                    health.push(health_finding(
                        &ns,
                        &group.name,
                        key,
                        &rule.kind,
                        rule.last_error.as_deref(),
                    ));
                }
            }
            let entry = namespaces.entry(ns.clone()).or_insert_with(|| {
                (
                    Namespace {
                        name: ns,
                        ..Namespace::default()
                    },
                    owned,
                )
            });
            entry.0.groups.push(group);
        }
        let mut findings = version_findings(url, version, &wanted);
        findings.extend(health);
        Ok(Live {
            resources: namespace_resources(namespaces),
            findings,
        })
    }

    async fn live_ruler(&self, api: &ruler::Ruler<'_>, desired: &Desired) -> Result<Live, ProviderError> {
        let listed = api.list(None).await?;
        let known: Vec<String> = self.desired_namespaces(desired).into_iter().map(|n| n.name).collect();
        let mut namespaces = BTreeMap::new();
        for (name, groups) in listed {
            let owned = known.contains(&name);
            namespaces.insert(
                name.clone(),
                (
                    Namespace {
                        name,
                        groups,
                        ..Namespace::default()
                    },
                    owned,
                ),
            );
        }
        let mut findings = Vec::new();
        if let Some(state) = api.health().await? {
            for g in &state.groups {
                // The ruler reports the namespace as the group's `file`.
                let group = prometheus::group_of(g, None, Duration::ZERO);
                let keys = rules::rule_keys(&group);
                for (rule, key) in g.rules.iter().zip(&keys) {
                    if rule.health == "err" {
                        findings.push(health_finding(
                            &g.file,
                            &g.name,
                            key,
                            &rule.kind,
                            rule.last_error.as_deref(),
                        ));
                    }
                }
            }
        }
        Ok(Live {
            resources: namespace_resources(namespaces),
            findings,
        })
    }

    async fn apply_prometheus(
        &self,
        url: &str,
        rules_dir: Option<&Path>,
        by_ns: BTreeMap<String, Vec<&ApplyChange>>,
        client: &Client,
    ) -> Result<Option<String>, ProviderError> {
        let Some(dir) = rules_dir else {
            return Err(ProviderError::Refused(
                "reconcile against a Prometheus server needs connection.rules_dir (the directory its rule_files \
                 glob reads); without it the target can only be audited"
                    .into(),
            ));
        };
        let version = prometheus::version(client, url).await?;
        check_version(url, version, by_ns.values().flatten().copied())?;
        std::fs::create_dir_all(dir).map_err(|e| ProviderError::io(dir, e))?;
        // Prepare every file first: nothing is written if one cannot be built.
        let mut planned = Vec::new();
        for (ns, changes) in &by_ns {
            let path = dir.join(prometheus::file_name(ns));
            let current = match std::fs::read_to_string(&path) {
                Ok(text) => rules::parse_rule_file(&path.to_string_lossy(), &text)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(ProviderError::io(&path, e)),
            };
            let groups = overlay(current, changes);
            let text = if groups.is_empty() {
                None
            } else {
                let text = rules::to_yaml(&groups)?;
                // What plumb writes must pass its own promtool checks.
                rules::parse_rule_file(&path.to_string_lossy(), &text)?;
                Some(text)
            };
            planned.push((path, groups.iter().map(|g| g.name.clone()).collect::<Vec<_>>(), text));
        }
        let mut backup = prometheus::Backup::default();
        // Files are written one by one; `done` names those written before a
        // failure, so the error can say exactly what was touched.
        let mut done: Vec<String> = Vec::new();
        let mut write_error = None;
        for (path, _, text) in &planned {
            let step = (|| {
                backup.keep(path)?;
                match text {
                    Some(text) => prometheus::write_atomic(path, text),
                    None => match std::fs::remove_file(path) {
                        Ok(()) => Ok(()),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                        Err(e) => Err(ProviderError::io(path, e)),
                    },
                }
            })();
            match step {
                Ok(()) => done.push(path.display().to_string()),
                Err(e) => {
                    let rest: Vec<String> = planned
                        .iter()
                        .skip(done.len() + 1)
                        .map(|(p, _, _)| p.display().to_string())
                        .collect();
                    write_error = Some((e, rest));
                    break;
                }
            }
        }
        let outcome = match write_error {
            None => prometheus::reload(client, url).await,
            Some((e, rest)) => {
                let list = |v: &[String]| if v.is_empty() { "none".to_string() } else { v.join(", ") };
                Err(with_detail(
                    e,
                    &format!(
                        " [writing the rule files failed part-way; written before the failure: {}; not attempted: {}]",
                        list(&done),
                        list(&rest)
                    ),
                ))
            }
        };
        if let Err(e) = outcome {
            tracing::warn!(%url, error = %e, "reconcile failed; restoring the previous rule files");
            if let Err(restore) = backup.restore() {
                return Err(with_detail(
                    e,
                    &format!(" (restoring the previous rule files failed too: {restore})"),
                ));
            }
            if let Err(again) = prometheus::reload(client, url).await {
                tracing::warn!(%url, error = %again, "reload after restoring the previous rule files failed");
            }
            return Err(with_detail(e, " (the previous rule files were restored)"));
        }
        // Confirm through the rules API that each file now holds its groups.
        let data = match prometheus::rules(client, url).await {
            Ok(data) => data,
            Err(e) => return Ok(Some(format!("reloaded, but the result could not be confirmed: {e}"))),
        };
        for (path, names, _) in &planned {
            let file = path.to_string_lossy();
            let mut live: Vec<&str> = data
                .groups
                .iter()
                .filter(|g| g.file == file)
                .map(|g| g.name.as_str())
                .collect();
            let mut want: Vec<&str> = names.iter().map(String::as_str).collect();
            live.sort_unstable();
            want.sort_unstable();
            if live != want {
                // Written and reloaded, but not what was meant: the change
                // failed (files stay, the next plan shows the state).
                return Ok(Some(format!(
                    "GET {url}/api/v1/rules: after the reload {file} holds groups {live:?}, expected {want:?} \
                     (does rule_files include {}/*?)",
                    dir.display()
                )));
            }
        }
        Ok(None)
    }

    /// One namespace on a ruler: reads its groups, applies the changes, and
    /// writes each group that differs (`POST`) or is gone (`DELETE`), one
    /// request at a time. A failure part-way is undone: every group written
    /// before it is put back as it was (re-posted, or deleted if it was new),
    /// and the error says what was written, what was restored, and what was
    /// never attempted.
    async fn apply_ruler(
        &self,
        api: &ruler::Ruler<'_>,
        ns: &str,
        changes: &[&ApplyChange],
    ) -> Result<(), ProviderError> {
        let current = api.list(Some(ns)).await?.remove(ns).unwrap_or_default();
        let groups = overlay(current.clone(), changes);
        let mut steps: Vec<RulerStep> = Vec::new();
        for group in &groups {
            let before = current.iter().find(|g| g.name == group.name);
            let same = before.is_some_and(|b| rules::group_yaml(b).ok() == rules::group_yaml(group).ok());
            if !same {
                steps.push(RulerStep::Set {
                    group: Box::new(group.clone()),
                    before: before.cloned().map(Box::new),
                });
            }
        }
        for old in &current {
            if !groups.iter().any(|g| g.name == old.name) {
                steps.push(RulerStep::Delete {
                    before: Box::new(old.clone()),
                });
            }
        }
        for (i, step) in steps.iter().enumerate() {
            let result = match step {
                RulerStep::Set { group, .. } => api.set_group(ns, group).await,
                RulerStep::Delete { before } => api.delete_group(ns, &before.name).await,
            };
            let Err(e) = result else { continue };
            let done = &steps[..i];
            let mut undo_failures = Vec::new();
            for step in done.iter().rev() {
                let undo = match step {
                    RulerStep::Set { before: Some(b), .. } | RulerStep::Delete { before: b } => {
                        api.set_group(ns, b).await
                    }
                    RulerStep::Set { group, before: None } => api.delete_group(ns, &group.name).await,
                };
                if let Err(u) = undo {
                    undo_failures.push(format!("{}: {u}", step.describe(ns)));
                }
            }
            let list = |steps: &[RulerStep]| {
                if steps.is_empty() {
                    "none".to_string()
                } else {
                    steps.iter().map(|s| s.describe(ns)).collect::<Vec<_>>().join(", ")
                }
            };
            let restored = if done.is_empty() {
                String::new()
            } else if undo_failures.is_empty() {
                "; all of them were restored to their previous state".to_string()
            } else {
                format!("; restoring failed for {}", undo_failures.join("; "))
            };
            let detail = format!(
                " [while {}; written before the failure: {}{restored}; not attempted: {}]",
                step.describe(ns),
                list(done),
                list(&steps[i + 1..])
            );
            tracing::warn!(namespace = %ns, error = %e, %detail, "ruler write failed part-way");
            return Err(with_detail(e, &detail));
        }
        Ok(())
    }
}

/// One write to a ruler, with what it replaces (to undo it).
enum RulerStep {
    Set {
        group: Box<Group>,
        before: Option<Box<Group>>,
    },
    Delete {
        before: Box<Group>,
    },
}

impl RulerStep {
    fn describe(&self, ns: &str) -> String {
        match self {
            RulerStep::Set { group, before: None } => format!("create {ns}/{}", group.name),
            RulerStep::Set { group, .. } => format!("update {ns}/{}", group.name),
            RulerStep::Delete { before } => format!("delete {ns}/{}", before.name),
        }
    }
}

/// `e` with `detail` added to its message, keeping its request and status.
fn with_detail(e: ProviderError, detail: &str) -> ProviderError {
    match e {
        ProviderError::Api {
            request,
            status,
            message,
        } => ProviderError::Api {
            request,
            status,
            message: format!("{message}{detail}"),
        },
        other => ProviderError::Other(format!("{other}{detail}")),
    }
}

fn health_finding(ns: &str, group: &str, key: &str, kind: &str, error: Option<&str>) -> Finding {
    Finding {
        id: rules::rule_id(ns, group, key),
        kind: if kind == "alerting" { KIND_ALERT } else { KIND_RECORD }.to_string(),
        message: format!(
            "rule evaluation fails on the live server (health=err): {}",
            error.unwrap_or("no error text")
        ),
        severity: Severity::Warning,
    }
}

/// Group fields an older server refuses, and fields the rules API cannot
/// show at all (reported, never diffed).
fn version_findings(url: &str, version: Option<Version>, wanted: &BTreeMap<(String, String), Group>) -> Vec<Finding> {
    let mut out = Vec::new();
    for ((ns, name), group) in wanted {
        let id = rules::group_id(ns, name);
        if !group.labels.is_empty() && version.is_some_and(|v| v < prometheus::GROUP_LABELS_SINCE) {
            out.push(Finding {
                id: id.clone(),
                kind: KIND_GROUP.into(),
                message: format!(
                    "group labels need Prometheus >= {}; {url} runs {}: apply would be refused",
                    prometheus::GROUP_LABELS_SINCE,
                    version.map(|v| v.to_string()).unwrap_or_default()
                ),
                severity: Severity::Critical,
            });
        }
        if group.query_offset.is_some() {
            let (message, severity) = if version.is_some_and(|v| v < prometheus::QUERY_OFFSET_SINCE) {
                (
                    format!(
                        "query_offset needs Prometheus >= {}; {url} runs {}: apply would be refused",
                        prometheus::QUERY_OFFSET_SINCE,
                        version.map(|v| v.to_string()).unwrap_or_default()
                    ),
                    Severity::Critical,
                )
            } else {
                (
                    "query_offset is not auditable through this API (/api/v1/rules does not expose it)".to_string(),
                    Severity::Info,
                )
            };
            out.push(Finding {
                id,
                kind: KIND_GROUP.into(),
                message,
                severity,
            });
        }
    }
    out
}

/// Refuses, before any write, desired groups the server would reject.
fn check_version<'a>(
    url: &str,
    version: Option<Version>,
    changes: impl Iterator<Item = &'a ApplyChange>,
) -> Result<(), ProviderError> {
    let Some(version) = version else { return Ok(()) };
    for change in changes {
        let Some(desired) = change.desired.as_ref().filter(|r| r.kind == KIND_GROUP) else {
            continue;
        };
        let (group, _) = rules::group_from_body(&desired.body());
        if !group.labels.is_empty() && version < prometheus::GROUP_LABELS_SINCE {
            return Err(ProviderError::Refused(format!(
                "{}: group labels need Prometheus >= {}, but {url} runs {version}; nothing was written",
                change.id,
                prometheus::GROUP_LABELS_SINCE
            )));
        }
        if group.query_offset.is_some() && version < prometheus::QUERY_OFFSET_SINCE {
            return Err(ProviderError::Refused(format!(
                "{}: query_offset needs Prometheus >= {}, but {url} runs {version}; nothing was written",
                change.id,
                prometheus::QUERY_OFFSET_SINCE
            )));
        }
    }
    Ok(())
}

fn namespace_resources(namespaces: BTreeMap<String, (Namespace, bool)>) -> Vec<Resource> {
    let mut out = Vec::new();
    for (_, (ns, owned)) in namespaces {
        let authority = if owned { Authority::Owned } else { Authority::Foreign };
        out.extend(
            rules::to_resources(&ns)
                .into_iter()
                .map(|r| r.with_authority(authority)),
        );
    }
    out
}

/// The namespace a change belongs to (its documents carry it).
fn namespace_of(change: &ApplyChange) -> String {
    change
        .desired
        .as_ref()
        .or(change.live.as_ref())
        .map(|r| str_of(&r.body(), "namespace"))
        .unwrap_or_default()
}

/// The rule key is the id's last part after `rule/<ns>/<group>/`.
fn rule_key(id: &str, ns: &str, group: &str) -> String {
    id.strip_prefix(&format!("rule/{ns}/{group}/"))
        .unwrap_or(id)
        .to_string()
}

/// A namespace's groups after the allowed changes, starting from what is
/// there now. Rules the changes do not mention stay as they are; a group's
/// desired order is followed for the rules present, and a rule present but
/// missing from that order (its delete was not allowed) is kept at the end
/// rather than dropped.
pub fn overlay(current: Vec<Group>, changes: &[&ApplyChange]) -> Vec<Group> {
    struct Slot {
        group: Group,
        rules: Vec<(String, rules::Rule)>,
        order: Option<Vec<String>>,
    }
    let mut slots: Vec<Slot> = current
        .into_iter()
        .map(|g| {
            let keys = rules::rule_keys(&g);
            let rules = keys.into_iter().zip(g.rules.iter().cloned()).collect();
            Slot {
                group: Group { rules: Vec::new(), ..g },
                rules,
                order: None,
            }
        })
        .collect();
    let find = |slots: &mut Vec<Slot>, name: &str| -> usize {
        match slots.iter().position(|s| s.group.name == name) {
            Some(i) => i,
            None => {
                slots.push(Slot {
                    group: Group {
                        name: name.to_string(),
                        ..Group::default()
                    },
                    rules: Vec::new(),
                    order: None,
                });
                slots.len() - 1
            }
        }
    };
    // Groups first, so rule changes land in groups that exist.
    for change in changes.iter().filter(|c| kind_of(c) == KIND_GROUP) {
        match (change.action, &change.desired, &change.live) {
            (Action::Delete, _, Some(live)) => {
                let name = str_of(&live.body(), "name");
                slots.retain(|s| s.group.name != name);
            }
            (Action::Create | Action::Update, Some(desired), _) => {
                let (group, order) = rules::group_from_body(&desired.body());
                let i = find(&mut slots, &group.name);
                slots[i].group = Group {
                    rules: Vec::new(),
                    ..group
                };
                slots[i].order = Some(order);
            }
            _ => {}
        }
    }
    for change in changes.iter().filter(|c| kind_of(c) != KIND_GROUP) {
        let Some(doc) = change.desired.as_ref().or(change.live.as_ref()) else {
            continue;
        };
        let body = doc.body();
        let (ns, group) = (str_of(&body, "namespace"), str_of(&body, "group"));
        let key = rule_key(&change.id, &ns, &group);
        match (change.action, &change.desired) {
            (Action::Delete, _) => {
                if let Some(slot) = slots.iter_mut().find(|s| s.group.name == group) {
                    slot.rules.retain(|(k, _)| *k != key);
                }
            }
            (Action::Create | Action::Update, Some(desired)) => {
                let rule = rules::rule_from_body(&desired.body());
                let i = find(&mut slots, &group);
                match slots[i].rules.iter_mut().find(|(k, _)| *k == key) {
                    Some(slot) => slot.1 = rule,
                    None => slots[i].rules.push((key, rule)),
                }
            }
            _ => {}
        }
    }
    slots
        .into_iter()
        .map(|slot| {
            let mut group = slot.group;
            let mut rest = slot.rules;
            if let Some(order) = slot.order {
                for key in order {
                    if let Some(pos) = rest.iter().position(|(k, _)| *k == key) {
                        group.rules.push(rest.remove(pos).1);
                    }
                }
            }
            group.rules.extend(rest.into_iter().map(|(_, r)| r));
            group
        })
        .collect()
}

fn kind_of(change: &ApplyChange) -> &str {
    change
        .desired
        .as_ref()
        .or(change.live.as_ref())
        .map(|r| r.kind.as_str())
        .unwrap_or("")
}

/// Duration fields compared by value: `1h` = `60m` = Prometheus's `3600`
/// seconds re-spelled; missing = `0s` (the zero `model.Duration`).
fn same_duration(a: Option<&Value>, b: Option<&Value>) -> bool {
    let d = |v: Option<&Value>| match v.and_then(Value::as_str) {
        None => Some(Duration::ZERO),
        Some(t) => promql::parse_duration(t).ok(),
    };
    matches!((d(a), d(b)), (Some(x), Some(y)) if x == y)
}

#[async_trait]
impl Provider for PrometheusProvider {
    fn desired(&self, root: &Path, dir: &Path, _ctx: &Ctx) -> Result<Desired, ProviderError> {
        let mut namespaces = rules::read_dir_as(root, dir, self.dialect())?;
        if self.is_ruler() {
            // A ruler namespace is the file's path without its extension:
            // `team-a/alerts.yaml` → namespace `team-a/alerts`.
            for ns in &mut namespaces {
                for ext in [".yaml", ".yml", ".json"] {
                    if let Some(stem) = ns.name.strip_suffix(ext) {
                        ns.name = stem.to_string();
                        break;
                    }
                }
            }
        }
        if let Ok(mut aliases) = self.aliases.lock() {
            *aliases = namespaces
                .iter()
                .filter(|n| !n.aliases.is_empty())
                .map(|n| (n.name.clone(), n.aliases.clone()))
                .collect();
        }
        let resources: Vec<Resource> = namespaces.iter().flat_map(rules::to_resources).collect();
        tracing::debug!(dir = %dir.display(), namespaces = namespaces.len(), documents = resources.len(), "read rule files");
        Ok(Desired {
            resources,
            findings: Vec::new(),
        })
    }

    async fn live(&self, desired: &Desired, ctx: &Ctx) -> Result<Live, ProviderError> {
        let client = self.client(ctx)?;
        let call = async {
            match &self.connection.backend {
                Backend::Prometheus { url, rules_dir } => {
                    self.live_prometheus(url, rules_dir.as_deref(), desired, &client).await
                }
                Backend::Ruler { .. } => match self.ruler(&client) {
                    Some(api) => self.live_ruler(&api, desired).await,
                    None => Err(ProviderError::Other("not a ruler target".into())),
                },
            }
        };
        // A whole read never outlasts the core's bound, retries included.
        match tokio::time::timeout(ctx.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(ProviderError::Timeout {
                what: format!("reading rules from {}", self.endpoint()),
                after: ctx.timeout,
            }),
        }
    }

    fn normalize(&self, pair: Pair<'_>) {
        let (Some(desired), Some(live)) = (pair.desired, pair.live) else {
            return;
        };
        let (Value::Object(d), Value::Object(l)) = (desired, live) else {
            return;
        };
        let respell = |d: &mut serde_json::Map<String, Value>, l: &mut serde_json::Map<String, Value>, key: &str| {
            if same_duration(d.get(key), l.get(key)) {
                match d.get(key).cloned() {
                    Some(v) if !promql::parse_duration(v.as_str().unwrap_or("")).is_ok_and(|x| x.is_zero()) => {
                        l.insert(key.into(), v);
                    }
                    _ => {
                        d.remove(key);
                        l.remove(key);
                    }
                }
            }
        };
        if pair.kind == KIND_GROUP {
            respell(d, l, "interval");
            respell(d, l, "query_offset");
            respell(d, l, "evaluation_delay");
            // Mimir treats source_tenants as a set (dskit
            // `tenant.NormalizeTenantIDs` sorts and de-duplicates the ids
            // a federated query reads), so their order is not drift.
            let tenants = |m: &serde_json::Map<String, Value>| {
                let mut t: Vec<String> = m
                    .get("source_tenants")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                t.sort();
                t.dedup();
                t
            };
            if tenants(d) == tenants(l) {
                match d.get("source_tenants").cloned() {
                    Some(v) => {
                        l.insert("source_tenants".into(), v);
                    }
                    None => {
                        l.remove("source_tenants");
                    }
                }
            }
            if !self.is_ruler() {
                // /api/v1/rules shows neither: group labels come back merged
                // into each rule's labels (compared there) and query_offset
                // is not exposed at all (a finding says so).
                for key in ["labels", "query_offset"] {
                    d.remove(key);
                    l.remove(key);
                }
            }
            return;
        }
        // Prometheus re-prints the expression (`rule.Query().String()`);
        // equal meaning takes Git's spelling so only real changes show.
        if let (Some(Value::String(de)), Some(Value::String(le))) = (d.get("expr"), l.get("expr")) {
            // LogQL is compared as text with whitespace normalised (no LogQL
            // parser in Rust; see `logql`), PromQL by its syntax tree.
            let same = if self.dialect() == rules::Dialect::Loki {
                logql::same_text(de, le)
            } else {
                promql::same_meaning(de, le)
            };
            if same {
                let spelled = de.clone();
                l.insert("expr".into(), Value::String(spelled));
            }
        }
        respell(d, l, "for");
        respell(d, l, "keep_firing_for");
    }

    async fn apply(&self, changes: &[ApplyChange], ctx: &Ctx) -> Result<Vec<ChangeResult>, ProviderError> {
        let client = self.client(ctx)?;
        let mut results = Vec::with_capacity(changes.len());
        let mut by_ns: BTreeMap<String, Vec<&ApplyChange>> = BTreeMap::new();
        for change in changes {
            if change.action == Action::Unmanaged {
                results.push(ChangeResult {
                    id: change.id.clone(),
                    action: change.action,
                    outcome: Outcome::Refused("unmanaged rules are only reported".into()),
                });
            } else {
                by_ns.entry(namespace_of(change)).or_default().push(change);
            }
        }
        match &self.connection.backend {
            Backend::Prometheus { url, rules_dir } => {
                self.apply_prometheus(url, rules_dir.as_deref(), by_ns.clone(), &client)
                    .await?;
                for change in by_ns.values().flatten() {
                    tracing::info!(target_name = %ctx.target, id = %change.id, action = %change.action, "applied");
                    results.push(ChangeResult {
                        id: change.id.clone(),
                        action: change.action,
                        outcome: Outcome::Applied,
                    });
                }
            }
            Backend::Ruler { .. } => {
                let Some(api) = self.ruler(&client) else {
                    return Err(ProviderError::Other("not a ruler target".into()));
                };
                let mut written: Vec<&str> = Vec::new();
                for (ns, list) in &by_ns {
                    let outcome = match self.apply_ruler(&api, ns, list).await {
                        Ok(()) => {
                            written.push(ns);
                            Outcome::Applied
                        }
                        Err(e) => {
                            // Namespaces are independent on a ruler: the
                            // others are still written; the message names
                            // those already done, for the record.
                            let before = if written.is_empty() {
                                "none".to_string()
                            } else {
                                written.join(", ")
                            };
                            Outcome::Failed(format!("{e} (namespaces written before this one: {before})"))
                        }
                    };
                    for change in list {
                        results.push(ChangeResult {
                            id: change.id.clone(),
                            action: change.action,
                            outcome: outcome.clone(),
                        });
                    }
                }
            }
        }
        Ok(results)
    }

    async fn import(&self, live: &Live, out: &Path, _ctx: &Ctx) -> Result<Vec<PathBuf>, ProviderError> {
        let changes: Vec<ApplyChange> = live
            .resources
            .iter()
            .map(|r| ApplyChange {
                id: r.id.clone(),
                action: Action::Create,
                desired: Some(r.clone()),
                live: None,
            })
            .collect();
        let mut by_ns: BTreeMap<String, Vec<&ApplyChange>> = BTreeMap::new();
        for change in &changes {
            by_ns.entry(namespace_of(change)).or_default().push(change);
        }
        let mut written = Vec::new();
        for (ns, list) in by_ns {
            let groups = overlay(Vec::new(), &list);
            let mut rel = ns.clone();
            if self.is_ruler() || !(rel.ends_with(".yml") || rel.ends_with(".yaml")) {
                rel.push_str(".yaml");
            }
            // A server's rule file path is absolute (`/etc/prometheus/…`):
            // keep only its plain components, so the file lands below `out`.
            let rel: PathBuf = Path::new(&rel)
                .components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(part) => Some(part),
                    _ => None,
                })
                .collect();
            let path = out.join(&rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| ProviderError::io(parent, e))?;
            }
            let text = rules::to_yaml(&groups)?;
            std::fs::write(&path, text).map_err(|e| ProviderError::io(&path, e))?;
            written.push(path);
        }
        tracing::info!(out = %out.display(), files = written.len(), "imported rule files");
        Ok(written)
    }
}

impl PrometheusProvider {
    fn endpoint(&self) -> &str {
        match &self.connection.backend {
            Backend::Prometheus { url, .. } | Backend::Ruler { url, .. } => url,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn normalized(p: &PrometheusProvider, kind: &str, mut d: Value, mut l: Value) -> (Value, Value) {
        p.normalize(Pair {
            id: "x",
            kind,
            desired: Some(&mut d),
            live: Some(&mut l),
        });
        (d, l)
    }

    fn prom() -> PrometheusProvider {
        build(&json!({"url": "http://127.0.0.1:9"}), Path::new(".")).unwrap()
    }

    #[test]
    fn spelling_is_not_drift_meaning_is() {
        let p = prom();
        let (d, l) = normalized(
            &p,
            KIND_ALERT,
            json!({"alert": "A", "expr": "(up{b=\"1\", a=\"2\"}) == 0", "for": "60m"}),
            json!({"alert": "A", "expr": "up{a=\"2\",b=\"1\"} == 0", "for": "1h"}),
        );
        assert_eq!(d, l);
        // A missing `for` equals `0s`.
        let (d, l) = normalized(
            &p,
            KIND_ALERT,
            json!({"expr": "up"}),
            json!({"expr": "up", "for": "0s"}),
        );
        assert_eq!(d, l);
        // A changed threshold or duration stays, spelled as each side has it.
        let (d, l) = normalized(
            &p,
            KIND_ALERT,
            json!({"expr": "up > 1", "for": "60m"}),
            json!({"expr": "(up) > 2", "for": "30m"}),
        );
        assert_eq!(d["expr"], "up > 1");
        assert_eq!(l["expr"], "(up) > 2");
        assert_eq!((d["for"].as_str(), l["for"].as_str()), (Some("60m"), Some("30m")));
    }

    #[test]
    fn group_fields_the_rules_api_cannot_show_are_left_out_for_prometheus_only() {
        let d = json!({"name": "g", "interval": "1m", "labels": {"team": "a"}, "query_offset": "1m", "rules": ["A"]});
        let l = json!({"name": "g", "interval": "60s", "rules": ["A"]});
        let (nd, nl) = normalized(&prom(), KIND_GROUP, d.clone(), l.clone());
        assert_eq!(nd, nl);
        let ruler = build(&json!({"ruler_url": "http://127.0.0.1:9"}), Path::new(".")).unwrap();
        let (nd, nl) = normalized(&ruler, KIND_GROUP, d, l);
        assert_ne!(nd, nl, "a ruler shows group labels: they are compared");
    }

    /// Recorded from Debian's Prometheus 2.42 (tests/fixtures).
    #[test]
    fn recorded_2_42_answer() {
        let data: prometheus::RulesData = prometheus::decode(
            "GET fixture",
            include_str!("../tests/fixtures/prometheus-2.42-rules.json"),
        )
        .unwrap();
        let node = data.groups.iter().find(|g| g.name == "node").unwrap();
        let group = prometheus::group_of(node, None, Duration::from_secs(60));
        assert_eq!(group.interval, None, "the global interval is not the group's");
        assert_eq!(group.rules[0].for_.as_deref(), Some("1h"));
        assert_eq!(group.rules[0].keep_firing_for.as_deref(), Some("5m"));
        assert_eq!(group.rules[1].record.as_deref(), Some("job:up:sum"));
        assert!(group.rules[1].labels.is_empty());
        let broken = data.groups.iter().find(|g| g.name == "broken").unwrap();
        let group = prometheus::group_of(broken, None, Duration::from_secs(60));
        assert_eq!((group.interval.as_deref(), group.limit), (Some("1s"), Some(10)));
        assert_eq!(broken.rules[0].health, "err");
        assert!(broken.rules[0].last_error.as_deref().unwrap().contains("many-to-one"));
    }

    /// A 3.x-shaped answer (constructed after `web/api/v1/api.go` of 3.x:
    /// `groupNextToken` in `data`, group labels merged into rule labels):
    /// a desired group with `labels` compares equal to it.
    #[test]
    fn newer_answer_with_group_labels_merged() {
        let data: prometheus::RulesData =
            prometheus::decode("GET fixture", include_str!("../tests/fixtures/prometheus-3-rules.json")).unwrap();
        let live_group = prometheus::group_of(&data.groups[0], None, Duration::from_secs(60));
        let live = rules::to_resources(&Namespace {
            name: "node/alerts.yml".into(),
            groups: vec![live_group],
            ..Namespace::default()
        });
        let desired_group = rules::parse_rule_file(
            "node/alerts.yml",
            "groups:\n- name: node\n  labels: {team: infra}\n  rules:\n  - alert: InstanceDown\n    expr: up{job=\"node\",env=\"prod\"} == 0\n    for: 60m\n    labels: {severity: page}\n    annotations: {summary: \"{{ $labels.instance }} is down\"}\n",
        )
        .unwrap();
        let desired = rules::to_resources(&Namespace {
            name: "node/alerts.yml".into(),
            groups: desired_group,
            ..Namespace::default()
        });
        let p = prom();
        for (d, l) in desired.iter().zip(&live) {
            assert_eq!(d.id, l.id);
            let (nd, nl) = normalized(&p, &d.kind, d.body(), l.body());
            assert_eq!(nd, nl, "{}", d.id);
        }
    }
}
