//! Compliance reports from the history: per target, audits run and failed,
//! the share of time in sync, drift incidents (first seen, resolved,
//! duration, resources, commits, who changed it), drift still open and
//! reconciles done; and a summary over the estate. Time that no record
//! vouches for is unknown, never in sync. Rendered as Markdown, one
//! self-contained HTML file with an SVG timeline per target, or JSON.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::record::{seq_of_key, DaySummary, Observation};
use super::{HistoryError, Record, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    InSync,
    Drift,
    Error,
    Unknown,
}

#[derive(Debug, Clone, Serialize)]
pub struct Segment {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub state: State,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Shares {
    pub in_sync: f64,
    pub drift: f64,
    pub error: f64,
    pub unknown: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    pub first_seen: DateTime<Utc>,
    pub resolved: Option<DateTime<Utc>>,
    /// Until resolved, or until the end of the report for open drift.
    pub duration_seconds: i64,
    pub resources: Vec<String>,
    pub commit_at_start: Option<String>,
    pub commit_at_end: Option<String>,
    /// Who the live system says changed the drifted resources.
    pub changed_by: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub target: String,
    pub provider: String,
    pub audits: usize,
    pub failed_audits: usize,
    pub reconciles_applied: usize,
    pub reconciles_failed: usize,
    pub shares: Shares,
    pub incidents: Vec<Incident>,
    pub open_drift: Option<Incident>,
    pub timeline: Vec<Segment>,
    /// When the target's newest signed digest was written: records after
    /// it are not vouched for by a signature yet.
    pub vouched_through: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub generated_at: DateTime<Utc>,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// A record vouches for the state it saw for at most this long.
    pub unknown_after_seconds: i64,
    pub targets: Vec<TargetReport>,
}

/// Reads each target's records and builds the report for `[since, until)`.
pub async fn build(
    store: &dyn Store,
    targets: &[String],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    unknown_after: Duration,
) -> Result<Report, HistoryError> {
    let mut reports = Vec::new();
    for target in targets {
        let observations = observations(store, target, since - unknown_after, until).await?;
        let mut report = target_report(target, &observations, since, until, unknown_after);
        report.vouched_through = newest_digest(store, target).await?;
        reports.push(report);
    }
    Ok(Report {
        generated_at: Utc::now(),
        since,
        until,
        unknown_after_seconds: unknown_after.num_seconds(),
        targets: reports,
    })
}

/// A target's observations from `from` to `until`: whole days from their
/// summary objects, the rest (today, days not yet summarised) from the
/// records themselves. Records are in time order by key, so the first one
/// of the window is found by bisection instead of reading every older one.
pub async fn observations(
    store: &dyn Store,
    target: &str,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<Observation>, HistoryError> {
    let mut out = Vec::new();
    let mut summarised = std::collections::HashSet::new();
    let summary_prefix = format!("_summaries/{target}/");
    for key in store.list(&summary_prefix).await? {
        let day = key
            .trim_start_matches(&summary_prefix)
            .trim_end_matches(".json")
            .to_string();
        if !day_may_matter(&day, from, until) {
            continue;
        }
        let bytes = store.get(&key).await?;
        let summary: DaySummary = serde_json::from_slice(&bytes).map_err(|e| HistoryError::Record {
            key: key.clone(),
            message: e.to_string(),
        })?;
        out.extend(summary.observations.into_iter().filter(|o| o.recorded_at < until));
        summarised.extend(summary.keys);
    }
    let candidates: Vec<String> = store
        .list(&format!("{target}/records/"))
        .await?
        .into_iter()
        .filter(|k| seq_of_key(k).is_some() && !summarised.contains(k))
        .collect();
    let read = |key: String| async move {
        let bytes = store.get(&key).await?;
        serde_json::from_slice::<Record>(&bytes).map_err(|e| HistoryError::Record {
            key,
            message: e.to_string(),
        })
    };
    // The first candidate recorded at or after `from`.
    let (mut low, mut high) = (0, candidates.len());
    let mut known: std::collections::HashMap<usize, Record> = std::collections::HashMap::new();
    while low < high {
        let middle = (low + high) / 2;
        let record = read(candidates[middle].clone()).await?;
        let before = record.recorded_at < from;
        known.insert(middle, record);
        if before {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    for (i, key) in candidates.iter().enumerate().skip(low) {
        let record = match known.remove(&i) {
            Some(r) => r,
            None => read(key.clone()).await?,
        };
        if record.recorded_at >= until {
            break;
        }
        out.push(Observation::from(&record));
    }
    out.sort_by_key(|o| o.recorded_at);
    Ok(out)
}

/// Whether a summarised day (`yyyy/mm/dd`) can hold records of the window.
fn day_may_matter(day: &str, from: DateTime<Utc>, until: DateTime<Utc>) -> bool {
    match chrono::NaiveDate::parse_from_str(day, "%Y/%m/%d") {
        Ok(d) => d >= from.date_naive() && d <= until.date_naive(),
        Err(_) => true,
    }
}

/// When the newest digest of `target` was written, if it has one: reports
/// say how far a signature vouches for the history they summarise
/// (`report --verify` checks the signatures).
pub async fn newest_digest(store: &dyn Store, target: &str) -> Result<Option<DateTime<Utc>>, HistoryError> {
    let keys = store.list(&format!("{target}/digests/")).await?;
    let Some(key) = keys.iter().filter(|k| seq_of_key(k).is_some()).max() else {
        return Ok(None);
    };
    let bytes = store.get(key).await?;
    Ok(super::digest::Opened::parse(&bytes).ok().map(|o| o.digest.written_at))
}

fn state_of(exit_code: i32) -> State {
    match exit_code {
        0 => State::InSync,
        2 => State::Drift,
        _ => State::Error,
    }
}

/// The report of one target from its observations in time order.
pub fn target_report(
    target: &str,
    records: &[Observation],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    unknown_after: Duration,
) -> TargetReport {
    let in_window: Vec<&Observation> = records
        .iter()
        .filter(|r| r.recorded_at >= since && r.recorded_at < until)
        .collect();
    let provider = records.last().map(|r| r.provider.clone()).unwrap_or_default();

    // Timeline: each record vouches until the next one or `unknown_after`.
    let mut timeline: Vec<Segment> = Vec::new();
    let mut push = |start: DateTime<Utc>, end: DateTime<Utc>, state: State| {
        let (start, end) = (start.max(since), end.min(until));
        if end <= start {
            return;
        }
        match timeline.last_mut() {
            Some(last) if last.state == state && last.end == start => last.end = end,
            _ => timeline.push(Segment { start, end, state }),
        }
    };
    let mut cursor = since;
    for (i, r) in records.iter().enumerate() {
        let next = records.get(i + 1).map(|n| n.recorded_at).unwrap_or(until);
        let vouched_until = next.min(r.recorded_at + unknown_after);
        if r.recorded_at > cursor {
            push(cursor, r.recorded_at, State::Unknown);
        }
        push(r.recorded_at, vouched_until, state_of(r.exit_code));
        cursor = cursor.max(vouched_until);
    }
    if cursor < until {
        push(cursor, until, State::Unknown);
    }
    let total = (until - since).num_milliseconds().max(1) as f64;
    let mut shares = Shares::default();
    for s in &timeline {
        let part = (s.end - s.start).num_milliseconds() as f64 / total;
        match s.state {
            State::InSync => shares.in_sync += part,
            State::Drift => shares.drift += part,
            State::Error => shares.error += part,
            State::Unknown => shares.unknown += part,
        }
    }

    // Incidents: from the first drift record to the first in-sync one after
    // it; errors and gaps say nothing and keep an incident open.
    let mut incidents = Vec::new();
    let mut open: Option<(Incident, BTreeSet<String>, BTreeSet<String>)> = None;
    let mut last_plan_ids: Vec<String> = Vec::new();
    let mut last_plan_who: Vec<String> = Vec::new();
    for r in records {
        if let Some(ids) = &r.change_ids {
            last_plan_ids = ids.clone();
            last_plan_who = r.changed_by.clone();
        }
        match r.exit_code {
            2 => {
                let entry = open.get_or_insert_with(|| {
                    (
                        Incident {
                            first_seen: r.recorded_at,
                            resolved: None,
                            duration_seconds: 0,
                            resources: Vec::new(),
                            commit_at_start: r.commit.clone(),
                            commit_at_end: r.commit.clone(),
                            changed_by: Vec::new(),
                        },
                        BTreeSet::new(),
                        BTreeSet::new(),
                    )
                });
                entry.0.commit_at_end = r.commit.clone();
                entry.1.extend(last_plan_ids.iter().cloned());
                entry.2.extend(last_plan_who.iter().cloned());
            }
            0 => {
                if let Some((mut incident, ids, who)) = open.take() {
                    incident.resolved = Some(r.recorded_at);
                    incident.commit_at_end = r.commit.clone();
                    incident.duration_seconds = (r.recorded_at - incident.first_seen).num_seconds();
                    incident.resources = ids.into_iter().collect();
                    incident.changed_by = who.into_iter().collect();
                    incidents.push(incident);
                }
            }
            _ => {}
        }
    }
    let open_drift = open.map(|(mut incident, ids, who)| {
        incident.duration_seconds = (until - incident.first_seen).num_seconds();
        incident.resources = ids.into_iter().collect();
        incident.changed_by = who.into_iter().collect();
        incident
    });
    // Incidents that touch the window.
    incidents.retain(|i| i.resolved.is_none_or(|r| r >= since) && i.first_seen < until);

    let applied = in_window.iter().map(|r| r.reconciled_applied).sum();
    let failed = in_window.iter().map(|r| r.reconciled_failed).sum();
    TargetReport {
        target: target.to_string(),
        provider,
        audits: in_window.len(),
        failed_audits: in_window.iter().filter(|r| r.exit_code == 1).count(),
        reconciles_applied: applied,
        reconciles_failed: failed,
        shares,
        incidents,
        open_drift,
        timeline,
        vouched_through: None,
    }
}

/// What a report says of its signatures: how far the newest digest
/// reaches, or that none does.
fn vouched_text(vouched_through: Option<DateTime<Utc>>) -> String {
    match vouched_through {
        Some(at) => format!(
            "History vouched for by a signed digest through {} UTC; later records are not vouched for yet (`plumb report --verify` checks the signatures).",
            at.format("%Y-%m-%d %H:%M")
        ),
        None => "History not vouched for: no signed digest has been written for this target.".to_string(),
    }
}

fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn duration_text(seconds: i64) -> String {
    let (d, h, m) = (seconds / 86_400, (seconds % 86_400) / 3600, (seconds % 3600) / 60);
    match (d, h) {
        (0, 0) => format!("{m}m"),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn short(commit: &Option<String>) -> String {
    commit
        .as_deref()
        .map(|c| c[..c.len().min(12)].to_string())
        .unwrap_or_else(|| "-".into())
}

pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# plumb compliance report\n\nPeriod: {} to {} (UTC). Time no audit vouches for (no record within {}) counts as unknown.\n",
        report.since.format("%Y-%m-%d %H:%M"),
        report.until.format("%Y-%m-%d %H:%M"),
        duration_text(report.unknown_after_seconds)
    );
    out.push_str("| target | provider | audits | failed | in sync | drift | error | unknown | incidents | open drift | reconciles |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|\n");
    for t in &report.targets {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            t.target,
            t.provider,
            t.audits,
            t.failed_audits,
            percent(t.shares.in_sync),
            percent(t.shares.drift),
            percent(t.shares.error),
            percent(t.shares.unknown),
            t.incidents.len(),
            t.open_drift
                .as_ref()
                .map(|i| format!("since {}", i.first_seen.format("%Y-%m-%d %H:%M")))
                .unwrap_or_else(|| "no".into()),
            t.reconciles_applied
        );
    }
    for t in &report.targets {
        let _ = writeln!(out, "\n## {}\n", t.target);
        let _ = writeln!(out, "{}\n", vouched_text(t.vouched_through));
        if t.incidents.is_empty() && t.open_drift.is_none() {
            out.push_str("No drift incidents in this period.\n");
        }
        for (i, incident) in t.incidents.iter().chain(t.open_drift.iter()).enumerate() {
            let _ = writeln!(
                out,
                "{}. first seen {}, {} ({}); commits {} → {}; resources: {}{}",
                i + 1,
                incident.first_seen.format("%Y-%m-%d %H:%M"),
                incident
                    .resolved
                    .map(|r| format!("resolved {}", r.format("%Y-%m-%d %H:%M")))
                    .unwrap_or_else(|| "still open".into()),
                duration_text(incident.duration_seconds),
                short(&incident.commit_at_start),
                short(&incident.commit_at_end),
                if incident.resources.is_empty() {
                    "-".into()
                } else {
                    incident
                        .resources
                        .iter()
                        .map(|r| format!("`{r}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                if incident.changed_by.is_empty() {
                    String::new()
                } else {
                    format!("; changed by {}", incident.changed_by.join(", "))
                }
            );
        }
        if t.reconciles_applied + t.reconciles_failed > 0 {
            let _ = writeln!(
                out,
                "\nReconciles: {} applied, {} failed.",
                t.reconciles_applied, t.reconciles_failed
            );
        }
    }
    out
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One self-contained page: no scripts, styles inline, a timeline per target
/// drawn as inline SVG.
pub fn html(report: &Report) -> String {
    let mut out = String::new();
    out.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>plumb compliance report</title>\n<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}</style></head><body>\n");
    let _ = writeln!(
        out,
        "<h1>plumb compliance report</h1><p>Period: {} to {} (UTC). Time no audit vouches for counts as unknown.</p>",
        report.since.format("%Y-%m-%d %H:%M"),
        report.until.format("%Y-%m-%d %H:%M")
    );
    out.push_str("<p class=\"legend\"><span style=\"background:#2e7d32\"></span>in sync<span style=\"background:#f9a825\"></span>drift<span style=\"background:#c62828\"></span>error<span style=\"background:#bdbdbd\"></span>unknown</p>\n");
    out.push_str("<table><tr><th>target</th><th>audits</th><th>failed</th><th>in sync</th><th>drift</th><th>error</th><th>unknown</th><th>incidents</th><th>reconciles</th></tr>\n");
    for t in &report.targets {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html_escape(&t.target),
            t.audits,
            t.failed_audits,
            percent(t.shares.in_sync),
            percent(t.shares.drift),
            percent(t.shares.error),
            percent(t.shares.unknown),
            t.incidents.len() + usize::from(t.open_drift.is_some()),
            t.reconciles_applied
        );
    }
    out.push_str("</table>\n");
    let span = (report.until - report.since).num_milliseconds().max(1) as f64;
    for t in &report.targets {
        let _ = writeln!(out, "<h2>{}</h2>", html_escape(&t.target));
        let _ = writeln!(out, "<p>{}</p>", html_escape(&vouched_text(t.vouched_through)));
        out.push_str("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"100%\" height=\"24\" viewBox=\"0 0 1000 24\" preserveAspectRatio=\"none\" role=\"img\">");
        for s in &t.timeline {
            let x = (s.start - report.since).num_milliseconds() as f64 / span * 1000.0;
            let w = (s.end - s.start).num_milliseconds() as f64 / span * 1000.0;
            let colour = match s.state {
                State::InSync => "#2e7d32",
                State::Drift => "#f9a825",
                State::Error => "#c62828",
                State::Unknown => "#bdbdbd",
            };
            let _ = write!(
                out,
                "<rect x=\"{x:.2}\" y=\"0\" width=\"{w:.2}\" height=\"24\" fill=\"{colour}\"><title>{:?} {} – {}</title></rect>",
                s.state,
                s.start.format("%Y-%m-%d %H:%M"),
                s.end.format("%Y-%m-%d %H:%M")
            );
        }
        out.push_str("</svg>\n<ul>");
        for incident in t.incidents.iter().chain(t.open_drift.iter()) {
            let _ = write!(
                out,
                "<li>first seen {}, {} ({}); commits {} → {}; {}</li>",
                incident.first_seen.format("%Y-%m-%d %H:%M"),
                incident
                    .resolved
                    .map(|r| format!("resolved {}", r.format("%Y-%m-%d %H:%M")))
                    .unwrap_or_else(|| "still open".into()),
                duration_text(incident.duration_seconds),
                short(&incident.commit_at_start),
                short(&incident.commit_at_end),
                html_escape(&incident.resources.join(", "))
            );
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</body></html>\n");
    out
}

pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_default() + "\n"
}
