//! Policies (docs/policies.md): what plumb may do for a target and what it must not
//! count as drift. Applied by the engine and by apply, never by providers.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use globset::{GlobBuilder, GlobMatcher};
use plumb_model::{Resource, Severity};
use serde::{Deserialize, Serialize};

use crate::plan::path::{self, Segment};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Audit,
    Reconcile,
}

/// What live objects outside plumb's authority that Git lacks become.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnmanagedAs {
    #[default]
    Drift,
    Finding,
    Ignore,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub prune: bool,
    #[serde(default)]
    pub max_changes: Option<usize>,
    #[serde(default)]
    pub unmanaged: UnmanagedAs,
    #[serde(default)]
    pub severity: Severity,
    /// Provider-specific guards (`required_admins`, `max_removals`), handed to
    /// the provider as written.
    #[serde(default)]
    pub guards: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub ignore: Vec<IgnoreRule>,
    #[serde(default)]
    pub suspend: Option<Suspension>,
}

/// One rule. Without `reason`/`until` it is a standing ignore; with both it
/// is an acknowledgement of known drift that lapses by itself.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IgnoreRule {
    /// Glob over the resource kind (`Deployment`, `dashboard`, `*`).
    #[serde(default)]
    pub kind: Option<String>,
    /// Glob over the last segment of the id (the object's name).
    #[serde(default)]
    pub name: Option<String>,
    /// Glob over the whole id; `*` stays within one `/` segment, `**` crosses.
    #[serde(default)]
    pub id: Option<String>,
    /// Paths inside the document; none means the whole resource.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Only when the live object was last changed by this manager or person
    /// (`changed_by.who`, e.g. a Kubernetes field manager `hpa-controller`).
    #[serde(default)]
    pub field_manager: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// Last day the acknowledgement holds (`2026-12-31`, in the target's
    /// timezone), or an RFC 3339 instant.
    #[serde(default)]
    pub until: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Suspension {
    pub until: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct PolicyError {
    pub file: std::path::PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

/// Where an acknowledgement stands on the day of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    InForce,
    /// In force, lapsing within seven days.
    Expiring,
    Expired,
}

/// A rule made ready to match: globs compiled, paths parsed, dates read.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub index: usize,
    kind: Option<GlobMatcher>,
    name: Option<GlobMatcher>,
    id: Option<GlobMatcher>,
    pub paths: Vec<Vec<Segment>>,
    pub path_texts: Vec<String>,
    field_manager: Option<String>,
    pub reason: Option<String>,
    pub until_text: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl CompiledRule {
    pub fn is_acknowledgement(&self) -> bool {
        self.expires_at.is_some()
    }

    pub fn status(&self, now: DateTime<Utc>) -> Option<AckStatus> {
        let expires = self.expires_at?;
        Some(if now >= expires {
            AckStatus::Expired
        } else if expires - now <= chrono::Duration::days(7) {
            AckStatus::Expiring
        } else {
            AckStatus::InForce
        })
    }

    /// Whether the rule applies to this resource (paths aside).
    pub fn selects(&self, resource: &Resource, live: Option<&Resource>) -> bool {
        let name = resource.id.rsplit('/').next().unwrap_or(&resource.id);
        self.kind.as_ref().is_none_or(|g| g.is_match(&resource.kind))
            && self.name.as_ref().is_none_or(|g| g.is_match(name))
            && self.id.as_ref().is_none_or(|g| g.is_match(&resource.id))
            && self.field_manager.as_ref().is_none_or(|manager| {
                live.and_then(|l| l.changed_by.as_ref())
                    .is_some_and(|c| &c.who == manager)
            })
    }

    pub fn whole_resource(&self) -> bool {
        self.paths.is_empty()
    }
}

/// A policy with its rules compiled, for the engine.
#[derive(Debug, Clone, Default)]
pub struct CompiledPolicy {
    pub policy: Policy,
    pub rules: Vec<CompiledRule>,
    /// Digest of the policy file, recorded in history.
    pub digest: Option<String>,
    pub file: Option<std::path::PathBuf>,
}

impl Policy {
    pub fn load(file: &Path, tz: chrono_tz::Tz) -> Result<CompiledPolicy, PolicyError> {
        let text = std::fs::read_to_string(file).map_err(|e| PolicyError {
            file: file.to_path_buf(),
            line: None,
            message: format!("cannot read the policy: {e}"),
        })?;
        let mut compiled = Policy::parse(file, &text, tz)?;
        compiled.digest = Some(crate::mask::sha256_hex(text.as_bytes()));
        compiled.file = Some(file.to_path_buf());
        Ok(compiled)
    }

    pub fn parse(file: &Path, text: &str, tz: chrono_tz::Tz) -> Result<CompiledPolicy, PolicyError> {
        let err = |line: Option<usize>, message: String| PolicyError {
            file: file.to_path_buf(),
            line,
            message,
        };
        let policy: Policy = if text.trim().is_empty() {
            Policy::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| {
                let message = plumb_model::files::without_location(&e.to_string());
                err(e.location().map(|l| l.line()), message)
            })?
        };
        let mut rules = Vec::new();
        for (index, rule) in policy.ignore.iter().enumerate() {
            let line = rule_line(text, index);
            rules.push(compile_rule(index, rule, tz).map_err(|m| err(line, format!("ignore[{index}]: {m}")))?);
        }
        if let Some(suspend) = &policy.suspend {
            parse_until(&suspend.until, tz).map_err(|m| err(None, format!("suspend.until: {m}")))?;
        }
        Ok(CompiledPolicy {
            policy,
            rules,
            digest: None,
            file: None,
        })
    }
}

impl CompiledPolicy {
    /// The built-in policy of a target that names none: audit only.
    pub fn audit_only() -> Self {
        CompiledPolicy::default()
    }

    /// Whether reconcile is suspended now, and why.
    pub fn suspended(&self, now: DateTime<Utc>, tz: chrono_tz::Tz) -> Option<&Suspension> {
        let suspend = self.policy.suspend.as_ref()?;
        match parse_until(&suspend.until, tz) {
            Ok(until) if now < until => Some(suspend),
            _ => None,
        }
    }
}

fn compile_rule(index: usize, rule: &IgnoreRule, tz: chrono_tz::Tz) -> Result<CompiledRule, String> {
    let glob = |pattern: &str, literal_separator: bool| {
        GlobBuilder::new(pattern)
            .literal_separator(literal_separator)
            .build()
            .map(|g| g.compile_matcher())
            .map_err(|e| format!("invalid pattern {pattern:?}: {e}"))
    };
    if rule.kind.is_none() && rule.name.is_none() && rule.id.is_none() && rule.field_manager.is_none() {
        return Err("a rule needs at least one of kind, name, id or field_manager".into());
    }
    let expires_at = match (&rule.reason, &rule.until) {
        (Some(_), Some(until)) => Some(parse_until(until, tz)?),
        (None, Some(_)) => return Err("an acknowledgement with `until` needs a `reason`".into()),
        _ => None,
    };
    let mut paths = Vec::new();
    for p in &rule.paths {
        paths.push(path::parse(p)?);
    }
    Ok(CompiledRule {
        index,
        kind: rule.kind.as_deref().map(|p| glob(p, false)).transpose()?,
        name: rule.name.as_deref().map(|p| glob(p, false)).transpose()?,
        id: rule.id.as_deref().map(|p| glob(p, true)).transpose()?,
        paths,
        path_texts: rule.paths.clone(),
        field_manager: rule.field_manager.clone(),
        reason: rule.reason.clone(),
        until_text: rule.until.clone(),
        expires_at,
    })
}

/// `2026-12-31` holds through that whole day in `tz`; an RFC 3339 instant
/// holds until that instant.
pub fn parse_until(text: &str, tz: chrono_tz::Tz) -> Result<DateTime<Utc>, String> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Ok(instant.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("{text:?} is not a date (YYYY-MM-DD) or an RFC 3339 time"))?;
    let next = date
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .ok_or_else(|| format!("{text:?} is out of range"))?;
    tz.from_local_datetime(&next)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("{text:?} does not exist in {tz}"))
}

/// 1-based line of the `index`-th entry under `ignore:`, for messages.
fn rule_line(text: &str, index: usize) -> Option<usize> {
    let mut in_ignore = false;
    let mut seen = 0;
    let mut indent = None;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("ignore:") {
            in_ignore = true;
            continue;
        }
        if !in_ignore {
            continue;
        }
        let trimmed = line.trim_start();
        if !line.is_empty() && !line.starts_with(' ') && !line.starts_with('-') {
            break;
        }
        if trimmed.starts_with("- ") || trimmed == "-" {
            let this_indent = line.len() - trimmed.len();
            if indent.is_none() {
                indent = Some(this_indent);
            }
            if indent == Some(this_indent) {
                if seen == index {
                    return Some(i + 1);
                }
                seen += 1;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn parses_a_full_policy() {
        let text = "\
mode: reconcile
prune: true
max_changes: 10
unmanaged: finding
severity: critical
guards: { max_removals: 3 }
ignore:
  - kind: Deployment
    paths: [/spec/replicas]
  - id: \"apps/v1/*/shop/*\"
    reason: INC-42 hotfix
    until: 2026-12-01
suspend: { until: 2026-12-24, reason: incident }
";
        let compiled = Policy::parse(Path::new("p.yaml"), text, chrono_tz::UTC).unwrap();
        assert_eq!(compiled.policy.mode, Mode::Reconcile);
        assert_eq!(compiled.policy.max_changes, Some(10));
        assert_eq!(compiled.policy.unmanaged, UnmanagedAs::Finding);
        assert_eq!(compiled.rules.len(), 2);
        assert!(compiled.rules[1].is_acknowledgement());
        let resource = Resource::new("apps/v1/Deployment/shop/cart", "Deployment", json!({}));
        assert!(compiled.rules[1].selects(&resource, None));
        let other = Resource::new("apps/v1/Deployment/shop-x/cart/y", "Deployment", json!({}));
        assert!(!compiled.rules[1].selects(&other, None));
        assert!(compiled
            .suspended(utc("2026-12-20T00:00:00Z"), chrono_tz::UTC)
            .is_some());
        assert!(compiled
            .suspended(utc("2026-12-25T00:00:00Z"), chrono_tz::UTC)
            .is_none());
    }

    #[test]
    fn acknowledgement_lapses_after_its_last_day_in_the_target_timezone() {
        let rule = IgnoreRule {
            kind: Some("*".into()),
            reason: Some("r".into()),
            until: Some("2026-12-01".into()),
            ..Default::default()
        };
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        let compiled = compile_rule(0, &rule, berlin).unwrap();
        // Midnight in Berlin on 2 December is 23:00 UTC on 1 December.
        assert_eq!(compiled.status(utc("2026-12-01T22:59:00Z")), Some(AckStatus::Expiring));
        assert_eq!(compiled.status(utc("2026-12-01T23:00:00Z")), Some(AckStatus::Expired));
        assert_eq!(compiled.status(utc("2026-11-01T00:00:00Z")), Some(AckStatus::InForce));
    }

    #[test]
    fn unknown_key_and_bad_rule_name_their_line() {
        let err = Policy::parse(Path::new("p.yaml"), "mode: audit\nprun: true\n", chrono_tz::UTC).unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(err.message.contains("prun"), "{err}");
        let text = "ignore:\n  - kind: A\n  - kind: B\n    until: 2026-01-01\n";
        let err = Policy::parse(Path::new("p.yaml"), text, chrono_tz::UTC).unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.message.contains("needs a `reason`"), "{err}");
    }

    #[test]
    fn field_manager_rule_needs_a_matching_live_manager() {
        let rule = IgnoreRule {
            field_manager: Some("hpa".into()),
            paths: vec!["/spec/replicas".into()],
            ..Default::default()
        };
        let compiled = compile_rule(0, &rule, chrono_tz::UTC).unwrap();
        let desired = Resource::new("x", "Deployment", json!({}));
        let mut live = desired.clone();
        assert!(!compiled.selects(&desired, Some(&live)));
        live.changed_by = Some(plumb_model::ChangedBy {
            who: "hpa".into(),
            when: None,
        });
        assert!(compiled.selects(&desired, Some(&live)));
    }
}
