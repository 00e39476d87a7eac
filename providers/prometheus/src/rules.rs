//! The rule-file model: namespaces (a rule file, or a ruler namespace) of
//! groups of alerting and recording rules; reading them from Git (plain
//! `groups:` files and Prometheus Operator `PrometheusRule` objects) with
//! the checks `promtool check rules` makes; stable ids; and turning a
//! namespace into plumb documents, or back into rule-file YAML.
//!
//! Validation follows Prometheus's `model/rulefmt/rulefmt.go`
//! (`RuleGroups.Validate`, `RuleNode.Validate`) and its strict YAML decoding
//! (unknown keys are errors), including `testTemplateParsing` (the Go
//! templates of alerting rules' labels and annotations, see
//! [`crate::templates`]).
//!
//! Three dialects ([`Dialect`]): Prometheus rule files; a Mimir/Cortex
//! ruler, whose groups have more keys (`source_tenants`, `evaluation_delay`,
//! `align_evaluation_time_on_interval`: Mimir `pkg/ruler/rulespb/compat.go`
//! `ToProto`/`FromProto`); and a Loki ruler, whose expressions are LogQL
//! (checked and compared by [`crate::logql`], not parsed as PromQL).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use plumb_model::files::{self, Document};
use plumb_model::{Origin, ProviderError, Resource};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::{logql, promql, templates};

/// Which rule language a file is read as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Dialect {
    /// Prometheus rule files (`promtool check rules`).
    #[default]
    Prometheus,
    /// A Mimir or Cortex ruler: PromQL, plus [`MIMIR_GROUP_KEYS`].
    Mimir,
    /// A Loki ruler: LogQL expressions; only [`LOKI_GROUP_KEYS`].
    Loki,
}

/// Group keys a Mimir ruler stores beyond Prometheus's (Mimir
/// `pkg/ruler/rulespb/compat.go`: `SourceTenants`, `EvaluationDelay` — the
/// deprecated spelling of `query_offset` —, `AlignEvaluationTimeOnInterval`;
/// documented at
/// <https://grafana.com/docs/mimir/latest/references/architecture/components/ruler/#federated-rule-groups>).
pub const MIMIR_GROUP_KEYS: &[&str] = &[
    "source_tenants",
    "evaluation_delay",
    "align_evaluation_time_on_interval",
];

/// Group keys Loki's ruler keeps: Loki `pkg/ruler/base/rulespb/rules.proto`
/// `RuleGroupDesc` has `name`, `interval`, `rules` (and `limit` in current
/// releases); Loki decodes the body with non-strict `yaml.Unmarshal`
/// (`pkg/ruler/base/api.go` `CreateRuleGroup`), so any other key would be
/// dropped silently and show as drift forever — plumb refuses it up front.
pub const LOKI_GROUP_KEYS: &[&str] = &["name", "interval", "limit", "rules"];

/// Kinds of the documents this provider produces.
pub const KIND_ALERT: &str = "alert";
pub const KIND_RECORD: &str = "record";
pub const KIND_GROUP: &str = "group";

/// One rule as written in a rule file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rule {
    pub alert: Option<String>,
    pub record: Option<String>,
    pub expr: String,
    pub for_: Option<String>,
    pub keep_firing_for: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub line: Option<usize>,
}

impl Rule {
    pub fn name(&self) -> &str {
        self.alert.as_deref().or(self.record.as_deref()).unwrap_or("")
    }

    pub fn kind(&self) -> &'static str {
        if self.alert.is_some() {
            KIND_ALERT
        } else {
            KIND_RECORD
        }
    }
}

/// One rule group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    pub name: String,
    pub interval: Option<String>,
    pub limit: Option<u64>,
    /// Prometheus ≥ 2.53 only; not exposed by `/api/v1/rules`.
    pub query_offset: Option<String>,
    /// Prometheus ≥ 3.0 only; the API shows them merged into each rule.
    pub labels: BTreeMap<String, String>,
    /// Mimir/Cortex federated rule groups: the tenants queried.
    pub source_tenants: Vec<String>,
    /// Mimir: the deprecated spelling of `query_offset`.
    pub evaluation_delay: Option<String>,
    /// Mimir (experimental): evaluate at multiples of the interval.
    pub align_evaluation_time_on_interval: bool,
    pub rules: Vec<Rule>,
    pub line: Option<usize>,
}

/// A rule file relative to the target, or a ruler namespace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Namespace {
    pub name: String,
    /// The file below the source root it was read from (desired only).
    pub file: Option<PathBuf>,
    /// File-name prefixes under which a Prometheus Operator writes this
    /// file's groups (`<k8s namespace>-<name>`), for mapping live groups back.
    pub aliases: Vec<String>,
    pub groups: Vec<Group>,
}

/// `rule/<namespace>/<group>/<key>`.
pub fn rule_id(namespace: &str, group: &str, key: &str) -> String {
    format!("rule/{namespace}/{group}/{key}")
}

/// `group/<namespace>/<group>`.
pub fn group_id(namespace: &str, group: &str) -> String {
    format!("group/{namespace}/{group}")
}

/// A rule's labels as Prometheus evaluates them: group labels, overridden by
/// the rule's own (Prometheus 3 `rules/manager.go` `LoadGroups`:
/// `labels.FromMap(rg.Labels)` merged under `r.Labels`).
pub fn effective_labels(group: &Group, rule: &Rule) -> BTreeMap<String, String> {
    let mut labels = group.labels.clone();
    labels.extend(rule.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels
}

/// The keys that tell a group's rules apart: the name alone where it is
/// unique in the group; otherwise the name and the labels whose values
/// differ among the rules of that name (`HighCPU{severity=critical}`);
/// and, where the labels are equal too, the occurrence (`…#2`). Both the
/// desired and the live side use this, so ids match across them.
pub fn rule_keys(group: &Group) -> Vec<String> {
    let labels: Vec<BTreeMap<String, String>> = group.rules.iter().map(|r| effective_labels(group, r)).collect();
    let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, rule) in group.rules.iter().enumerate() {
        by_name.entry(rule.name()).or_default().push(i);
    }
    let mut keys: Vec<String> = group.rules.iter().map(|r| r.name().to_string()).collect();
    for (name, members) in by_name {
        if members.len() < 2 {
            continue;
        }
        let mut all_keys: Vec<&String> = members.iter().flat_map(|&i| labels[i].keys()).collect();
        all_keys.sort_unstable();
        all_keys.dedup();
        let distinguishing: Vec<&String> = all_keys
            .into_iter()
            .filter(|k| {
                let first = labels[members[0]].get(*k);
                members.iter().any(|&i| labels[i].get(*k) != first)
            })
            .collect();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for &i in &members {
            let mut key = name.to_string();
            if !distinguishing.is_empty() {
                let parts: Vec<String> = distinguishing
                    .iter()
                    .map(|k| format!("{k}={}", labels[i].get(*k).map(String::as_str).unwrap_or("")))
                    .collect();
                key = format!("{key}{{{}}}", parts.join(","));
            }
            let n = seen.entry(key.clone()).or_insert(0);
            *n += 1;
            if *n > 1 {
                key = format!("{key}#{n}");
            }
            keys[i] = key;
        }
    }
    keys
}

/// The document of one rule. `labels` are the effective labels (see
/// [`effective_labels`]), since that is all a Prometheus server shows.
pub fn rule_body(namespace: &str, group: &Group, rule: &Rule) -> Value {
    let mut body = Map::new();
    // Where the rule lives, so apply and import need not parse ids (group
    // and namespace names may hold `/`). Always equal on both sides.
    body.insert("namespace".into(), json!(namespace));
    body.insert("group".into(), json!(group.name));
    if let Some(alert) = &rule.alert {
        body.insert("alert".into(), json!(alert));
    }
    if let Some(record) = &rule.record {
        body.insert("record".into(), json!(record));
    }
    body.insert("expr".into(), json!(rule.expr));
    if let Some(d) = &rule.for_ {
        body.insert("for".into(), json!(d));
    }
    if let Some(d) = &rule.keep_firing_for {
        body.insert("keep_firing_for".into(), json!(d));
    }
    let labels = effective_labels(group, rule);
    if !labels.is_empty() {
        body.insert("labels".into(), json!(labels));
    }
    if !rule.annotations.is_empty() {
        body.insert("annotations".into(), json!(rule.annotations));
    }
    Value::Object(body)
}

/// The document of a group: its settings and its rules in evaluation order.
pub fn group_body(namespace: &str, group: &Group, keys: &[String]) -> Value {
    let mut body = Map::new();
    body.insert("namespace".into(), json!(namespace));
    body.insert("name".into(), json!(group.name));
    if let Some(i) = &group.interval {
        body.insert("interval".into(), json!(i));
    }
    if let Some(l) = group.limit.filter(|l| *l > 0) {
        body.insert("limit".into(), json!(l));
    }
    if let Some(q) = &group.query_offset {
        body.insert("query_offset".into(), json!(q));
    }
    if !group.labels.is_empty() {
        body.insert("labels".into(), json!(group.labels));
    }
    if !group.source_tenants.is_empty() {
        body.insert("source_tenants".into(), json!(group.source_tenants));
    }
    if let Some(d) = &group.evaluation_delay {
        body.insert("evaluation_delay".into(), json!(d));
    }
    if group.align_evaluation_time_on_interval {
        body.insert("align_evaluation_time_on_interval".into(), json!(true));
    }
    body.insert("rules".into(), json!(keys));
    Value::Object(body)
}

/// All documents of a namespace: each group, then its rules.
pub fn to_resources(ns: &Namespace) -> Vec<Resource> {
    let mut out = Vec::new();
    for group in &ns.groups {
        let keys = rule_keys(group);
        let mut g = Resource::new(
            group_id(&ns.name, &group.name),
            KIND_GROUP,
            group_body(&ns.name, group, &keys),
        );
        if let Some(file) = &ns.file {
            g = g.with_origin(Origin {
                file: file.clone(),
                line: group.line,
            });
        }
        out.push(g);
        for (rule, key) in group.rules.iter().zip(&keys) {
            let mut r = Resource::new(
                rule_id(&ns.name, &group.name, key),
                rule.kind(),
                rule_body(&ns.name, group, rule),
            );
            if let Some(file) = &ns.file {
                r = r.with_origin(Origin {
                    file: file.clone(),
                    line: rule.line.or(group.line),
                });
            }
            out.push(r);
        }
    }
    out
}

// ------------------------------------------------------------------ reading

fn parse_err(file: &Path, line: Option<usize>, message: impl Into<String>) -> ProviderError {
    ProviderError::Parse {
        origin: Origin {
            file: file.to_path_buf(),
            line,
        },
        message: message.into(),
    }
}

/// Scalars Go's YAML decoder accepts for a string field (`expr: 1`,
/// `severity: 2`).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Finds the lines of groups and rules in the file text, moving forward
/// only, so repeated names map to their own occurrence.
struct Lines<'a> {
    lines: Vec<&'a str>,
    cursor: usize,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str, start_line: usize) -> Self {
        Lines {
            lines: text.lines().collect(),
            cursor: start_line.saturating_sub(1),
        }
    }

    /// 1-based line of the next `key: value` (optionally as a list item).
    fn find(&mut self, key: &str, value: &str) -> Option<usize> {
        for i in self.cursor..self.lines.len() {
            let t = self.lines[i].trim_start();
            let t = t.strip_prefix("- ").map(str::trim_start).unwrap_or(t);
            let Some(rest) = t.strip_prefix(key).and_then(|r| r.strip_prefix(':')) else {
                continue;
            };
            let rest = rest.split(" #").next().unwrap_or("").trim();
            let unquoted = rest.trim_matches(|c| c == '"' || c == '\'');
            if unquoted == value || rest.is_empty() && value.is_empty() {
                self.cursor = i + 1;
                return Some(i + 1);
            }
        }
        None
    }
}

const GROUP_KEYS: &[&str] = &["name", "interval", "limit", "query_offset", "labels", "rules"];
/// Fields the Prometheus Operator's CRD allows on a group that mean nothing
/// to Prometheus itself (Thanos' `partial_response_strategy`); the operator
/// drops them when it writes the rule file for Prometheus.
const OPERATOR_ONLY_GROUP_KEYS: &[&str] = &["partial_response_strategy"];
const RULE_KEYS: &[&str] = &[
    "alert",
    "record",
    "expr",
    "for",
    "keep_firing_for",
    "labels",
    "annotations",
];

/// Label names as Prometheus 2.x validates them (`model.LabelName.IsValid`):
/// `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Metric names (`model.IsValidMetricName`): `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn string_map(
    file: &Path,
    line: Option<usize>,
    what: &str,
    v: Option<&Value>,
) -> Result<BTreeMap<String, String>, ProviderError> {
    let mut out = BTreeMap::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                let text = match v {
                    Value::Null => String::new(),
                    other => {
                        scalar(other).ok_or_else(|| parse_err(file, line, format!("{what}.{k}: expected a string")))?
                    }
                };
                out.insert(k.clone(), text);
            }
        }
        Some(_) => return Err(parse_err(file, line, format!("{what}: expected a mapping"))),
    }
    Ok(out)
}

fn opt_duration(
    file: &Path,
    line: Option<usize>,
    what: &str,
    v: Option<&Value>,
) -> Result<Option<String>, ProviderError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let text = scalar(v).ok_or_else(|| parse_err(file, line, format!("{what}: expected a duration")))?;
            promql::parse_duration(&text).map_err(|e| parse_err(file, line, format!("{what}: {e}")))?;
            Ok(Some(text))
        }
    }
}

/// Parses the `groups:` list of one document into groups, validating as
/// `promtool check rules` does. Errors carry the file and the line of the
/// group or rule at fault.
fn parse_groups(
    file: &Path,
    text: &str,
    doc_line: usize,
    groups: &Value,
    dialect: Dialect,
    extra_group_keys: &[&str],
) -> Result<Vec<Group>, ProviderError> {
    let mut lines = Lines::new(text, doc_line);
    let doc = Some(doc_line);
    let items = match groups {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => return Err(parse_err(file, doc, "groups: expected a list of groups")),
    };
    let mut out: Vec<Group> = Vec::with_capacity(items.len());
    for (gi, item) in items.iter().enumerate() {
        let Value::Object(g) = item else {
            return Err(parse_err(file, doc, format!("groups[{gi}]: expected a mapping")));
        };
        let name = g.get("name").and_then(scalar).unwrap_or_default();
        let gline = lines.find("name", &name).or(doc);
        for key in g.keys() {
            let k = key.as_str();
            let known = match dialect {
                Dialect::Prometheus => GROUP_KEYS.contains(&k),
                Dialect::Mimir => GROUP_KEYS.contains(&k) || MIMIR_GROUP_KEYS.contains(&k),
                Dialect::Loki => LOKI_GROUP_KEYS.contains(&k),
            };
            if known || extra_group_keys.contains(&k) {
                continue;
            }
            let message = match dialect {
                Dialect::Prometheus if MIMIR_GROUP_KEYS.contains(&k) => format!(
                    "group {name:?}: field {key} is a Mimir/Cortex ruler key; Prometheus refuses it \
                     (field {key} not found in type rulefmt.RuleGroup)"
                ),
                Dialect::Loki => format!(
                    "group {name:?}: field {key} is not kept by Loki's ruler (it stores only name, interval, \
                     limit and rules; anything else would be dropped)"
                ),
                _ => format!("group {name:?}: field {key} not found in type rulefmt.RuleGroup"),
            };
            return Err(parse_err(file, gline, message));
        }
        if name.is_empty() {
            return Err(parse_err(file, gline, "Groupname must not be empty"));
        }
        if out.iter().any(|o| o.name == name) {
            return Err(parse_err(
                file,
                gline,
                format!("groupname: \"{name}\" is repeated in the same file"),
            ));
        }
        let interval = opt_duration(file, gline, &format!("group {name:?}: interval"), g.get("interval"))?;
        let query_offset = opt_duration(
            file,
            gline,
            &format!("group {name:?}: query_offset"),
            g.get("query_offset"),
        )?;
        let limit = match g.get("limit") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .ok_or_else(|| parse_err(file, gline, format!("group {name:?}: limit must be a whole number")))?,
            ),
        };
        let evaluation_delay = opt_duration(
            file,
            gline,
            &format!("group {name:?}: evaluation_delay"),
            g.get("evaluation_delay"),
        )?;
        let source_tenants = match g.get("source_tenants") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|t| {
                    scalar(t).filter(|t| !t.is_empty()).ok_or_else(|| {
                        parse_err(
                            file,
                            gline,
                            format!("group {name:?}: source_tenants: expected a list of tenant ids"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(parse_err(
                    file,
                    gline,
                    format!("group {name:?}: source_tenants: expected a list of tenant ids"),
                ))
            }
        };
        let align_evaluation_time_on_interval = match g.get("align_evaluation_time_on_interval") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(parse_err(
                    file,
                    gline,
                    format!("group {name:?}: align_evaluation_time_on_interval: expected true or false"),
                ))
            }
        };
        let labels = string_map(file, gline, &format!("group {name:?}: labels"), g.get("labels"))?;
        for k in labels.keys() {
            if !valid_label_name(k) || k == "__name__" {
                return Err(parse_err(
                    file,
                    gline,
                    format!("group {name:?}: invalid label name: {k}"),
                ));
            }
        }
        let rules = match g.get("rules") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(rules)) => {
                let mut out = Vec::with_capacity(rules.len());
                for (ri, r) in rules.iter().enumerate() {
                    out.push(parse_rule(file, &mut lines, gline, &name, ri, r, dialect)?);
                }
                out
            }
            Some(_) => {
                return Err(parse_err(
                    file,
                    gline,
                    format!("group {name:?}: rules: expected a list"),
                ))
            }
        };
        out.push(Group {
            name,
            interval,
            limit,
            query_offset,
            labels,
            source_tenants,
            evaluation_delay,
            align_evaluation_time_on_interval,
            rules,
            line: gline,
        });
    }
    Ok(out)
}

fn parse_rule(
    file: &Path,
    lines: &mut Lines<'_>,
    gline: Option<usize>,
    group: &str,
    index: usize,
    value: &Value,
    dialect: Dialect,
) -> Result<Rule, ProviderError> {
    let Value::Object(r) = value else {
        return Err(parse_err(
            file,
            gline,
            format!("group {group:?}: rules[{index}]: expected a mapping"),
        ));
    };
    let alert = r.get("alert").and_then(scalar).filter(|s| !s.is_empty());
    let record = r.get("record").and_then(scalar).filter(|s| !s.is_empty());
    let line = match (&alert, &record) {
        (Some(a), _) => lines.find("alert", a),
        (None, Some(n)) => lines.find("record", n),
        (None, None) => None,
    }
    .or(gline);
    let what = format!(
        "group {group:?}, rule {index} ({})",
        alert.as_deref().or(record.as_deref()).unwrap_or("unnamed")
    );
    for key in r.keys() {
        if !RULE_KEYS.contains(&key.as_str()) {
            return Err(parse_err(
                file,
                line,
                format!("{what}: field {key} not found in type rulefmt.RuleNode"),
            ));
        }
    }
    if alert.is_some() && record.is_some() {
        return Err(parse_err(
            file,
            line,
            format!("{what}: only one of 'record' and 'alert' must be set"),
        ));
    }
    if alert.is_none() && record.is_none() {
        return Err(parse_err(
            file,
            line,
            format!("{what}: one of 'record' or 'alert' must be set"),
        ));
    }
    let expr = r.get("expr").and_then(scalar).unwrap_or_default();
    if expr.trim().is_empty() {
        return Err(parse_err(
            file,
            line,
            format!("{what}: field 'expr' must be set in rule"),
        ));
    }
    if dialect == Dialect::Loki {
        logql::check(&expr).map_err(|e| parse_err(file, line, format!("{what}: {e}")))?;
    } else {
        promql_parser::parser::parse(&expr)
            .map_err(|e| parse_err(file, line, format!("{what}: could not parse expression: {e}")))?;
    }
    let for_ = opt_duration(file, line, &format!("{what}: for"), r.get("for"))?;
    let keep_firing_for = opt_duration(
        file,
        line,
        &format!("{what}: keep_firing_for"),
        r.get("keep_firing_for"),
    )?;
    let labels = string_map(file, line, &format!("{what}: labels"), r.get("labels"))?;
    let annotations = string_map(file, line, &format!("{what}: annotations"), r.get("annotations"))?;
    let nonzero = |d: &Option<String>| {
        d.as_deref()
            .and_then(|t| promql::parse_duration(t).ok())
            .is_some_and(|d| !d.is_zero())
    };
    if let Some(name) = &record {
        if !annotations.is_empty() {
            return Err(parse_err(
                file,
                line,
                format!("{what}: invalid field 'annotations' in recording rule"),
            ));
        }
        if nonzero(&for_) {
            return Err(parse_err(
                file,
                line,
                format!("{what}: invalid field 'for' in recording rule"),
            ));
        }
        if nonzero(&keep_firing_for) {
            return Err(parse_err(
                file,
                line,
                format!("{what}: invalid field 'keep_firing_for' in recording rule"),
            ));
        }
        if !valid_metric_name(name) {
            return Err(parse_err(
                file,
                line,
                format!("{what}: invalid recording rule name: {name}"),
            ));
        }
    }
    for k in labels.keys() {
        if !valid_label_name(k) || k == "__name__" {
            return Err(parse_err(file, line, format!("{what}: invalid label name: {k}")));
        }
    }
    for k in annotations.keys() {
        if !valid_label_name(k) {
            return Err(parse_err(file, line, format!("{what}: invalid annotation name: {k}")));
        }
    }
    if alert.is_some() {
        // rulefmt `testTemplateParsing`: alerting rules only.
        for (kind, map) in [("label", &labels), ("annotation", &annotations)] {
            for (k, v) in map {
                templates::check(v).map_err(|e| {
                    parse_err(
                        file,
                        line,
                        format!(
                            "{what}: {kind} {k:?}: template: __alert_{}: {e}",
                            alert.as_deref().unwrap_or("")
                        ),
                    )
                })?;
            }
        }
    }
    Ok(Rule {
        alert,
        record,
        expr,
        for_,
        keep_firing_for,
        labels,
        annotations,
        line,
    })
}

/// What one desired file holds (`None`: no rules in it, e.g. a Kubernetes
/// manifest of another kind, or a JSON file that is not a rule file).
pub fn read_file(root: &Path, dir: &Path, path: &Path) -> Result<Option<Namespace>, ProviderError> {
    read_file_as(root, dir, path, Dialect::Prometheus)
}

/// [`read_file`] in a given [`Dialect`].
pub fn read_file_as(
    root: &Path,
    dir: &Path,
    path: &Path,
    dialect: Dialect,
) -> Result<Option<Namespace>, ProviderError> {
    let text = plumb_model::files::read_text(root, path)?;
    let file = files::relative(root, path);
    let name = files::relative(dir, path).to_string_lossy().replace('\\', "/");
    let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let docs: Vec<Document> = if is_json {
        vec![Document {
            value: files::parse_json(&file, &text)?,
            origin: Origin {
                file: file.clone(),
                line: Some(1),
            },
        }]
    } else {
        files::parse_yaml_documents(&file, &text)?
    };
    let mut ns = Namespace {
        name,
        file: Some(file.clone()),
        aliases: Vec::new(),
        groups: Vec::new(),
    };
    let mut any = false;
    for doc in docs {
        let line = doc.origin.line.unwrap_or(1);
        let Value::Object(map) = &doc.value else {
            return Err(parse_err(
                &file,
                Some(line),
                "expected a mapping with `groups:` or a PrometheusRule",
            ));
        };
        let groups = if map.get("kind").and_then(Value::as_str) == Some("PrometheusRule") {
            let api = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            if !api.starts_with("monitoring.coreos.com/") {
                return Err(parse_err(
                    &file,
                    Some(line),
                    format!("PrometheusRule with apiVersion {api:?}: expected monitoring.coreos.com/v1"),
                ));
            }
            let meta = map.get("metadata");
            let k8s_ns = meta.and_then(|m| m.get("namespace")).and_then(Value::as_str);
            let k8s_name = meta.and_then(|m| m.get("name")).and_then(Value::as_str);
            if let (Some(n), Some(m)) = (k8s_ns, k8s_name) {
                // prometheus-operator pkg/prometheus/operator.go
                // (`PrometheusRuleFileName`... `<namespace>-<name>-<uid>.yaml`).
                ns.aliases.push(format!("{n}-{m}"));
            }
            parse_groups(
                &file,
                &text,
                line,
                map.get("spec").and_then(|s| s.get("groups")).unwrap_or(&Value::Null),
                dialect,
                OPERATOR_ONLY_GROUP_KEYS,
            )?
        } else if map.contains_key("kind") && map.contains_key("apiVersion") {
            // Another Kubernetes object next to the rules (a kube-prometheus
            // manifests directory): not ours.
            tracing::debug!(file = %file.display(), line, "skipping non-rule Kubernetes object");
            continue;
        } else if is_json && !map.contains_key("groups") {
            // A JSON file next to the rules (a dashboard, provenance data):
            // rule files are YAML by convention, JSON ones must say `groups`.
            tracing::debug!(file = %file.display(), "skipping JSON file without `groups`");
            continue;
        } else {
            if let Some(key) = map.keys().find(|k| k.as_str() != "groups") {
                return Err(parse_err(
                    &file,
                    Some(line),
                    format!("field {key} not found in type rulefmt.RuleGroups"),
                ));
            }
            parse_groups(
                &file,
                &text,
                line,
                map.get("groups").unwrap_or(&Value::Null),
                dialect,
                &[],
            )?
        };
        any = true;
        for g in groups {
            if ns.groups.iter().any(|o| o.name == g.name) {
                return Err(parse_err(
                    &file,
                    g.line,
                    format!("groupname: \"{}\" is repeated in the same file", g.name),
                ));
            }
            ns.groups.push(g);
        }
    }
    Ok(any.then_some(ns))
}

/// Reads every rule file below `dir` (`.yml`, `.yaml`, `.json`).
pub fn read_dir(root: &Path, dir: &Path) -> Result<Vec<Namespace>, ProviderError> {
    read_dir_as(root, dir, Dialect::Prometheus)
}

/// [`read_dir`] in a given [`Dialect`].
pub fn read_dir_as(root: &Path, dir: &Path, dialect: Dialect) -> Result<Vec<Namespace>, ProviderError> {
    let mut out = Vec::new();
    for path in files::walk(dir, &["yml", "yaml", "json"])? {
        if let Some(ns) = read_file_as(root, dir, &path, dialect)? {
            out.push(ns);
        }
    }
    Ok(out)
}

/// Parses rule-file text (a plain `groups:` file) without a source tree, for
/// files plumb wrote itself and ruler answers.
pub fn parse_rule_file(name: &str, text: &str) -> Result<Vec<Group>, ProviderError> {
    parse_rule_file_as(name, text, Dialect::Prometheus)
}

/// [`parse_rule_file`] in a given [`Dialect`] (a ruler's answers).
pub fn parse_rule_file_as(name: &str, text: &str, dialect: Dialect) -> Result<Vec<Group>, ProviderError> {
    let file = PathBuf::from(name);
    let mut groups = Vec::new();
    for doc in files::parse_yaml_documents(&file, text)? {
        let line = doc.origin.line.unwrap_or(1);
        groups.extend(parse_groups(
            &file,
            text,
            line,
            doc.value.get("groups").unwrap_or(&Value::Null),
            dialect,
            &[],
        )?);
    }
    Ok(groups)
}

/// Parses one group's YAML (the ruler's POST body) with the same checks.
pub fn parse_group_text(name: &str, text: &str, dialect: Dialect) -> Result<Group, ProviderError> {
    let file = PathBuf::from(name);
    let docs = files::parse_yaml_documents(&file, text)?;
    let Some(doc) = docs.into_iter().next() else {
        return Err(parse_err(&file, Some(1), "empty rule group"));
    };
    let mut groups = parse_groups(&file, text, 1, &Value::Array(vec![doc.value]), dialect, &[])?;
    groups
        .pop()
        .ok_or_else(|| parse_err(&file, Some(1), "empty rule group"))
}

// ------------------------------------------------------------------ writing

#[derive(Serialize)]
struct OutRule<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    alert: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<&'a str>,
    expr: &'a str,
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    for_: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_firing_for: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<&'a str, &'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
pub struct OutGroup<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query_offset: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    source_tenants: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    evaluation_delay: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    align_evaluation_time_on_interval: bool,
    rules: Vec<OutRule<'a>>,
}

#[derive(Serialize)]
struct OutFile<'a> {
    groups: Vec<OutGroup<'a>>,
}

/// A group in rule-file form. A rule label equal to the group's is left to
/// the group (the same effective label, see [`effective_labels`]).
pub fn out_group(group: &Group) -> OutGroup<'_> {
    OutGroup {
        name: &group.name,
        interval: group.interval.as_deref(),
        limit: group.limit.filter(|l| *l > 0),
        query_offset: group.query_offset.as_deref(),
        labels: &group.labels,
        source_tenants: &group.source_tenants,
        evaluation_delay: group.evaluation_delay.as_deref(),
        align_evaluation_time_on_interval: group.align_evaluation_time_on_interval,
        rules: group
            .rules
            .iter()
            .map(|r| OutRule {
                alert: r.alert.as_deref(),
                record: r.record.as_deref(),
                expr: &r.expr,
                for_: r.for_.as_deref(),
                keep_firing_for: r.keep_firing_for.as_deref(),
                labels: r
                    .labels
                    .iter()
                    .filter(|(k, v)| group.labels.get(*k) != Some(*v))
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
                annotations: &r.annotations,
            })
            .collect(),
    }
}

/// A whole rule file.
pub fn to_yaml(groups: &[Group]) -> Result<String, ProviderError> {
    let file = OutFile {
        groups: groups.iter().map(out_group).collect(),
    };
    serde_yaml_ng::to_string(&file).map_err(|e| ProviderError::Other(format!("could not write rule file YAML: {e}")))
}

/// One group as YAML (the ruler's POST body).
pub fn group_yaml(group: &Group) -> Result<String, ProviderError> {
    serde_yaml_ng::to_string(&out_group(group))
        .map_err(|e| ProviderError::Other(format!("could not write rule group YAML: {e}")))
}

/// A rule back from its document (apply: the desired side of a change).
pub fn rule_from_body(body: &Value) -> Rule {
    let s = |k: &str| body.get(k).and_then(scalar);
    let map = |k: &str| -> BTreeMap<String, String> {
        body.get(k)
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| scalar(v).map(|v| (k.clone(), v)))
                    .collect()
            })
            .unwrap_or_default()
    };
    Rule {
        alert: s("alert"),
        record: s("record"),
        expr: s("expr").unwrap_or_default(),
        for_: s("for"),
        keep_firing_for: s("keep_firing_for"),
        labels: map("labels"),
        annotations: map("annotations"),
        line: None,
    }
}

/// A group's settings back from its document; `rules` are the rule keys in
/// order, for the caller to fill in.
pub fn group_from_body(body: &Value) -> (Group, Vec<String>) {
    let group = Group {
        name: body.get("name").and_then(scalar).unwrap_or_default(),
        interval: body.get("interval").and_then(scalar),
        limit: body.get("limit").and_then(Value::as_u64),
        query_offset: body.get("query_offset").and_then(scalar),
        labels: body
            .get("labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| scalar(v).map(|v| (k.clone(), v)))
                    .collect()
            })
            .unwrap_or_default(),
        source_tenants: body
            .get("source_tenants")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(scalar).collect())
            .unwrap_or_default(),
        evaluation_delay: body.get("evaluation_delay").and_then(scalar),
        align_evaluation_time_on_interval: body
            .get("align_evaluation_time_on_interval")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        rules: Vec::new(),
        line: None,
    };
    let keys = body
        .get("rules")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(scalar).collect())
        .unwrap_or_default();
    (group, keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(alert: &str, labels: &[(&str, &str)]) -> Rule {
        Rule {
            alert: Some(alert.into()),
            expr: "up".into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Rule::default()
        }
    }

    #[test]
    fn keys_tell_repeated_names_apart_by_labels_then_occurrence() {
        let group = Group {
            name: "g".into(),
            rules: vec![
                rule("A", &[("severity", "warning"), ("team", "x")]),
                rule("A", &[("severity", "critical"), ("team", "x")]),
                rule("B", &[]),
                rule("C", &[("severity", "warning")]),
                rule("C", &[("severity", "warning")]),
            ],
            ..Group::default()
        };
        assert_eq!(
            rule_keys(&group),
            vec!["A{severity=warning}", "A{severity=critical}", "B", "C", "C#2"]
        );
    }

    #[test]
    fn group_labels_merge_under_rule_labels() {
        let group = Group {
            name: "g".into(),
            labels: [("team".to_string(), "a".to_string()), ("env".into(), "p".into())].into(),
            rules: vec![rule("A", &[("team", "b")])],
            ..Group::default()
        };
        let labels = effective_labels(&group, &group.rules[0]);
        assert_eq!(labels["team"], "b");
        assert_eq!(labels["env"], "p");
    }

    #[test]
    fn yaml_round_trip_keeps_meaning() {
        let text = "groups:\n- name: g\n  interval: 30s\n  rules:\n  - alert: A\n    expr: up == 0\n    for: 5m\n    labels: {severity: page}\n  - record: job:up:sum\n    expr: sum by (job) (up)\n";
        let groups = parse_rule_file("f.yml", text).unwrap();
        assert_eq!(groups[0].rules[0].line, Some(5));
        assert_eq!(groups[0].rules[1].line, Some(9));
        let again = parse_rule_file("f.yml", &to_yaml(&groups).unwrap()).unwrap();
        assert_eq!(again[0].rules[0].expr, "up == 0");
        assert_eq!(again[0].interval.as_deref(), Some("30s"));
        assert_eq!(again[0].rules[1].record.as_deref(), Some("job:up:sum"));
    }
}
