//! Desired state: what loads, what `promtool check rules` would refuse (each
//! refused with file and line), ids, and the real corpus in
//! `../shared/corpus/prometheus-rules/` checked file by file against
//! promtool's own verdict.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use plumb_model::{Provider, ProviderError};
use plumb_prometheus::{build, rules};
use serde_json::json;
use tempfile::TempDir;

fn load(text: &str) -> Result<Vec<plumb_model::Resource>, ProviderError> {
    let root = TempDir::new().unwrap();
    write(root.path(), "rules/team/a.yml", text);
    let p = build(&json!({"url": "http://127.0.0.1:9"}), Path::new(".")).unwrap();
    p.desired(root.path(), &root.path().join("rules"), &ctx())
        .map(|d| d.resources)
}

fn error_at(text: &str) -> (usize, String) {
    match load(text).unwrap_err() {
        ProviderError::Parse { origin, message } => {
            assert_eq!(origin.file, Path::new("rules/team/a.yml"));
            (origin.line.unwrap(), message)
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
}

const HEAD: &str = "groups:\n- name: g\n  rules:\n  - alert: Fine\n    expr: up == 0\n";

#[test]
fn invalid_promql_names_file_and_rule_line() {
    let (line, message) = error_at(&format!("{HEAD}  - alert: Broken\n    expr: sum(rate(x[5m])\n"));
    assert_eq!(line, 6);
    assert!(message.contains("could not parse expression"), "{message}");
    assert!(message.contains("Broken"), "{message}");
}

#[test]
fn bad_durations_are_refused() {
    for (field, value) in [("for", "5 minutes"), ("for", "300"), ("keep_firing_for", "1x")] {
        let (line, message) = error_at(&format!("{HEAD}  - alert: B\n    expr: up\n    {field}: {value}\n"));
        assert_eq!(line, 6, "{message}");
        assert!(message.contains("not a valid duration"), "{message}");
    }
    let (line, message) = error_at("groups:\n- name: g\n  interval: soon\n  rules: []\n");
    assert_eq!(line, 2);
    assert!(message.contains("interval"), "{message}");
}

#[test]
fn duplicate_group_names_in_one_file() {
    let (line, message) = error_at(&format!("{HEAD}- name: other\n  rules: []\n- name: g\n  rules: []\n"));
    assert_eq!(line, 8);
    assert!(
        message.contains("groupname: \"g\" is repeated in the same file"),
        "{message}"
    );
}

#[test]
fn alert_and_record_in_one_rule() {
    let (line, message) = error_at(&format!("{HEAD}  - alert: Both\n    record: both:x\n    expr: up\n"));
    assert_eq!(line, 6);
    assert!(
        message.contains("only one of 'record' and 'alert' must be set"),
        "{message}"
    );
    let (_, message) = error_at(&format!("{HEAD}  - expr: up\n"));
    assert!(message.contains("one of 'record' or 'alert' must be set"), "{message}");
}

#[test]
fn what_promtool_also_refuses() {
    for (rule, needle) in [
        ("  - record: bad name\n    expr: up\n", "invalid recording rule name"),
        (
            "  - record: a:b\n    expr: up\n    for: 5m\n",
            "invalid field 'for' in recording rule",
        ),
        (
            "  - record: a:b\n    expr: up\n    annotations: {x: y}\n",
            "invalid field 'annotations'",
        ),
        (
            "  - alert: A\n    expr: up\n    labels: {bad-name: x}\n",
            "invalid label name",
        ),
        ("  - alert: A\n    expr: \"\"\n", "field 'expr' must be set"),
        (
            "  - alert: A\n    expr: up\n    severity: page\n",
            "field severity not found",
        ),
    ] {
        let (_, message) = error_at(&format!("{HEAD}{rule}"));
        assert!(message.contains(needle), "{rule}: {message}");
    }
    let (_, message) = error_at("groups:\n- name: \"\"\n  rules: []\n");
    assert!(message.contains("Groupname must not be empty"), "{message}");
    let (_, message) = error_at("grups: []\n");
    assert!(message.contains("field grups not found"), "{message}");
}

/// Go templates in alerting rules are checked offline as promtool's
/// `testTemplateParsing` does: a broken one is an error with file and line,
/// and promtool (when present) agrees on each case.
#[test]
fn broken_alert_templates_name_file_and_rule_line() {
    let scratch = TempDir::new().unwrap();
    for (annotation, needle) in [
        ("\"{{ $labels.instance\"", "unclosed action"),
        ("\"{{ $value | humanise }}\"", "function \"humanise\" not defined"),
        ("\"{{ $lables.job }}\"", "undefined variable \"$lables\""),
        ("\"{{ if $value }}high\"", "missing {{end}}"),
        ("\"{{ end }}\"", "unexpected {{end}}"),
    ] {
        let text =
            format!("{HEAD}  - alert: Templated\n    expr: up == 0\n    annotations:\n      summary: {annotation}\n");
        let (line, message) = error_at(&text);
        assert_eq!(line, 6, "{annotation}");
        assert!(message.contains("annotation \"summary\""), "{message}");
        assert!(message.contains(needle), "{annotation}: {message}");
        let path = scratch.path().join("t.yml");
        std::fs::write(&path, &text).unwrap();
        if Path::new(PROMTOOL).exists() {
            assert!(
                !promtool_accepts(&path, scratch.path()),
                "{annotation}: promtool accepted it"
            );
        }
    }
    // Labels are templates too; recording rules are not checked (promtool
    // does not either), and valid templates load.
    let (_, message) = error_at(&format!(
        "{HEAD}  - alert: L\n    expr: up\n    labels:\n      team: \"{{{{ nosuch }}}}\"\n"
    ));
    assert!(message.contains("label \"team\""), "{message}");
    assert!(load(&format!(
        "{HEAD}  - alert: Ok\n    expr: up\n    annotations:\n      summary: \"{{{{ $labels.job }}}} {{{{ $value | humanizePercentage }}}}\"\n"
    ))
    .is_ok());
}

#[test]
fn prometheus_rule_objects_and_other_manifests() {
    let text = r#"apiVersion: v1
kind: ConfigMap
metadata: {name: x}
---
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: am-rules, namespace: monitoring}
spec:
  groups:
  - name: am
    partial_response_strategy: warn
    rules:
    - alert: AmDown
      expr: up{job="am"} == 0
"#;
    let docs = load(text).unwrap();
    let ids: Vec<&str> = docs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["group/team/a.yml/am", "rule/team/a.yml/am/AmDown"]);
    assert_eq!(docs[1].origin.as_ref().unwrap().line, Some(13));
}

fn corpus() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/prometheus-rules");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIP: corpus not found at {}", dir.display());
        None
    }
}

#[test]
fn corpus_loads_all_2113_rules_with_unique_ids() {
    let Some(dir) = corpus() else { return };
    let namespaces = rules::read_dir(&dir, &dir).unwrap();
    let mut rules_count = 0;
    let mut repeated = 0;
    let mut occurrence = 0;
    let mut ids = HashSet::new();
    for ns in &namespaces {
        for r in rules::to_resources(ns) {
            assert!(ids.insert(r.id.clone()), "duplicate id {}", r.id);
        }
        for g in &ns.groups {
            rules_count += g.rules.len();
            let keys = rules::rule_keys(g);
            repeated += g
                .rules
                .iter()
                .filter(|r| g.rules.iter().filter(|o| o.name() == r.name()).count() > 1)
                .count();
            occurrence += keys.iter().filter(|k| k.contains('#')).count();
        }
    }
    assert_eq!(rules_count, 2113);
    // Warning/critical pairs and the like: names repeated inside a group.
    // Warning/critical pairs and the like: names repeated inside a group,
    // told apart by labels; identical labels fall back to occurrence.
    assert_eq!(repeated, 195);
    eprintln!("{repeated} rules share a name in their group; {occurrence} needed the occurrence");
    // Stable: a second read gives the same ids.
    let again: HashSet<String> = rules::read_dir(&dir, &dir)
        .unwrap()
        .iter()
        .flat_map(rules::to_resources)
        .map(|r| r.id)
        .collect();
    assert_eq!(again, ids);
}

/// promtool reads plain rule files only; for a `PrometheusRule` it is given
/// the object's `spec` (what the operator writes for Prometheus).
fn promtool_accepts(path: &Path, scratch: &Path) -> bool {
    let text = std::fs::read_to_string(path).unwrap();
    let target = if text.contains("kind: PrometheusRule") {
        let doc: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
        let mut spec = doc["spec"].clone();
        for g in spec["groups"].as_array_mut().unwrap() {
            g.as_object_mut().unwrap().remove("partial_response_strategy");
        }
        let out = scratch.join("spec.yml");
        std::fs::write(&out, serde_yaml_ng::to_string(&spec).unwrap()).unwrap();
        out
    } else {
        path.to_path_buf()
    };
    Command::new(PROMTOOL)
        .args(["check", "rules"])
        .arg(&target)
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn corpus_verdicts_match_promtool_file_by_file() {
    let Some(dir) = corpus() else { return };
    if !Path::new(PROMTOOL).exists() {
        eprintln!("SKIP: {PROMTOOL} is missing");
        return;
    }
    let scratch = TempDir::new().unwrap();
    let mut files = 0;
    let mut mismatches = Vec::new();
    for path in plumb_model::files::walk(&dir, &["yml", "yaml"]).unwrap() {
        let ours = rules::read_file(&dir, &dir, &path);
        let theirs = promtool_accepts(&path, scratch.path());
        files += 1;
        if ours.is_ok() != theirs {
            mismatches.push(format!(
                "{}: plumb {:?}, promtool ok={theirs}",
                path.display(),
                ours.err()
            ));
        }
    }
    assert_eq!(files, 198);
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}

#[test]
fn broken_copies_of_corpus_files_get_the_same_verdict_from_both() {
    let Some(dir) = corpus() else { return };
    if !Path::new(PROMTOOL).exists() {
        eprintln!("SKIP: {PROMTOOL} is missing");
        return;
    }
    let source = dir.join("monitoring-mixins/assets/alertmanager/alerts.yaml");
    let text = std::fs::read_to_string(&source).unwrap();
    let scratch = TempDir::new().unwrap();
    for (what, broken) in [
        ("promql", text.replacen("expr: |", "expr: |\n        sum(", 1)),
        ("duration", text.replacen("for: 10m", "for: 10 minutes", 1)),
        (
            "both kinds",
            text.replacen("- alert: ", "- record: x:y\n    alert: ", 1),
        ),
        ("repeated group", format!("{text}{}", text.replacen("groups:\n", "", 1))),
        ("template", text.replacen("{{ $labels.", "{{ $nolabels.", 1)),
    ] {
        assert_ne!(broken, text, "{what}: the mutation applied");
        let path = scratch.path().join("broken.yaml");
        std::fs::write(&path, &broken).unwrap();
        let ours = rules::read_file(scratch.path(), scratch.path(), &path);
        assert!(ours.is_err(), "{what}: plumb accepted it");
        assert!(!promtool_accepts(&path, scratch.path()), "{what}: promtool accepted it");
    }
}
