//! serve's `/metrics`: the plan gauges of docs/plan-format.md, rebuilt from the latest audit of
//! each target on every scrape (the same code as `plan --metrics-file`),
//! plus what only a long-running process has: the run-duration histogram,
//! reconcile actions, skipped runs and history write failures. Target
//! labels are the union over targets; SIGHUP rebuilds the series with the
//! new label names.

use std::sync::RwLock;
use std::time::Duration;

use prometheus::{CounterVec, Encoder, HistogramOpts, HistogramVec, IntCounter, Opts, Registry, TextEncoder};

use crate::config::Config;
use crate::source::SourceInfo;

struct Series {
    registry: Registry,
    label_names: Vec<String>,
    labels: std::collections::BTreeMap<String, Vec<String>>,
    duration: HistogramVec,
    reconcile: CounterVec,
    skipped: CounterVec,
    history_failures: IntCounter,
    alert_failures: IntCounter,
    source_info: Option<SourceInfo>,
}

pub struct LiveMetrics {
    series: RwLock<Series>,
}

fn build(config: &Config) -> Result<Series, prometheus::Error> {
    let registry = Registry::new();
    let label_names = config.target_label_names();
    let with = |base: &[&str]| -> Vec<String> {
        base.iter()
            .map(|s| s.to_string())
            .chain(label_names.iter().cloned())
            .collect()
    };
    let names = |v: &Vec<String>| {
        v.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<String>>()
    };
    let duration_labels = with(&["target"]);
    let duration = HistogramVec::new(
        HistogramOpts::new("plumb_run_duration_seconds", "Wall time of one audit of a target.").buckets(vec![
            0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
        ]),
        &names(&duration_labels).iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    let reconcile_labels = with(&["target", "action", "result"]);
    let reconcile = CounterVec::new(
        Opts::new(
            "plumb_reconcile_actions_total",
            "Changes reconcile carried out, by action and result.",
        ),
        &reconcile_labels.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    let skipped_labels = with(&["target"]);
    let skipped = CounterVec::new(
        Opts::new(
            "plumb_skipped_runs_total",
            "Scheduled audits skipped because the previous one was still running.",
        ),
        &skipped_labels.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    let history_failures = IntCounter::new(
        "plumb_history_write_failures_total",
        "History records that could not be written.",
    )?;
    registry.register(Box::new(duration.clone()))?;
    registry.register(Box::new(reconcile.clone()))?;
    registry.register(Box::new(skipped.clone()))?;
    registry.register(Box::new(history_failures.clone()))?;
    let alert_failures = IntCounter::new(
        "plumb_alertmanager_push_failures_total",
        "Pushes of alerts to an Alertmanager peer that failed after retries.",
    )?;
    registry.register(Box::new(alert_failures.clone()))?;
    let labels = config
        .targets
        .iter()
        .map(|t| {
            let values = label_names
                .iter()
                .map(|k| t.labels.get(k).cloned().unwrap_or_default())
                .collect();
            (t.name.clone(), values)
        })
        .collect();
    Ok(Series {
        registry,
        label_names,
        labels,
        duration,
        reconcile,
        skipped,
        history_failures,
        alert_failures,
        source_info: None,
    })
}

impl LiveMetrics {
    pub fn new(config: &Config) -> anyhow::Result<LiveMetrics> {
        Ok(LiveMetrics {
            series: RwLock::new(build(config).map_err(|e| anyhow::anyhow!("metrics: {e}"))?),
        })
    }

    fn with<R>(&self, f: impl FnOnce(&Series) -> R) -> R {
        match self.series.read() {
            Ok(s) => f(&s),
            Err(p) => f(&p.into_inner()),
        }
    }

    /// New label names after a config reload; counters start again.
    pub fn relabel(&self, config: &Config) -> anyhow::Result<()> {
        let fresh = build(config).map_err(|e| anyhow::anyhow!("metrics: {e}"))?;
        match self.series.write() {
            Ok(mut s) => *s = fresh,
            Err(p) => *p.into_inner() = fresh,
        }
        Ok(())
    }

    fn values(series: &Series, target: &str, base: &[&str]) -> Vec<String> {
        let extra = series
            .labels
            .get(target)
            .cloned()
            .unwrap_or_else(|| vec![String::new(); series.label_names.len()]);
        base.iter().map(|s| s.to_string()).chain(extra).collect()
    }

    pub fn observe_duration(&self, target: &str, took: Duration) {
        self.with(|s| {
            let v = Self::values(s, target, &[target]);
            s.duration
                .with_label_values(&v.iter().map(String::as_str).collect::<Vec<_>>())
                .observe(took.as_secs_f64());
        });
    }

    pub fn reconciled(&self, target: &str, result: &plumb_model::ChangeResult) {
        let outcome = match result.outcome {
            plumb_model::Outcome::Applied => "applied",
            plumb_model::Outcome::Failed(_) => "failed",
            plumb_model::Outcome::Refused(_) => "refused",
        };
        let action = result.action.to_string();
        self.with(|s| {
            let v = Self::values(s, target, &[target, &action, outcome]);
            s.reconcile
                .with_label_values(&v.iter().map(String::as_str).collect::<Vec<_>>())
                .inc();
        });
    }

    pub fn skipped(&self, target: &str) {
        self.with(|s| {
            let v = Self::values(s, target, &[target]);
            s.skipped
                .with_label_values(&v.iter().map(String::as_str).collect::<Vec<_>>())
                .inc();
        });
    }

    pub fn history_failed(&self) {
        self.with(|s| s.history_failures.inc());
    }

    pub fn alert_failed(&self) {
        self.with(|s| s.alert_failures.inc());
    }

    pub fn source_fetched(&self, info: &SourceInfo) {
        if let Ok(mut s) = self.series.write() {
            s.source_info = Some(info.clone());
        }
    }

    /// The counters and histograms in the text format.
    pub fn render(&self) -> String {
        self.with(|s| {
            let mut buffer = Vec::new();
            let _ = TextEncoder::new().encode(&s.registry.gather(), &mut buffer);
            String::from_utf8_lossy(&buffer).into_owned()
        })
    }
}
