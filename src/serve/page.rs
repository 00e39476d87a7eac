//! The status page: every target with its state, when it last ran and last
//! succeeded, the commit audited, counts per action, and its drifted
//! resources with their diffs in collapsible blocks. One HTML document with
//! inline styles and no scripts or external assets (works air-gapped); it
//! refreshes itself.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::TargetStatus;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// "3m ago", "2h ago", "never".
pub fn ago(when: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(when) = when else {
        return "never".into();
    };
    let s = (now - when).num_seconds().max(0);
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86_399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

fn diff_html(diff: &str) -> String {
    let mut out = String::new();
    for line in diff.lines().filter(|l| !l.starts_with("---") && !l.starts_with("+++")) {
        let class = match line.chars().next() {
            Some('+') => "add",
            Some('-') => "del",
            Some('@') => "hunk",
            _ => "ctx",
        };
        let _ = writeln!(out, "<span class=\"{class}\">{}</span>", escape(line));
    }
    out
}

pub fn render(statuses: &[TargetStatus], now: DateTime<Utc>) -> String {
    let mut out = String::new();
    out.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"10\"><title>plumb</title>\n<style>\nbody{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}\n.in_sync{color:#2e7d32;font-weight:bold}.drift{color:#b26a00;font-weight:bold}.error{color:#c62828;font-weight:bold}.running,.pending{color:#555}\npre{background:#f6f8fa;padding:8px;overflow-x:auto}.add{color:#1a7f37}.del{color:#cf222e}.hunk{color:#0550ae}summary{cursor:pointer}\n</style></head><body>\n<h1>plumb</h1>\n");
    let _ = writeln!(
        out,
        "<p>{} target(s); updated {} UTC; refreshes every 10 s.</p>",
        statuses.len(),
        now.format("%Y-%m-%d %H:%M:%S")
    );
    out.push_str("<table><tr><th>target</th><th>provider</th><th>state</th><th>last run</th><th>last success</th><th>commit</th><th>create</th><th>update</th><th>delete</th><th>unmanaged</th><th>findings</th></tr>\n");
    for s in statuses {
        let state = super::http::state_word(s);
        let plan = s.plan.as_ref();
        let n = |f: fn(&crate::plan::Summary) -> usize| plan.map(|p| f(&p.summary).to_string()).unwrap_or_default();
        let _ = writeln!(
            out,
            "<tr><td><a href=\"#{0}\">{0}</a></td><td>{1}</td><td class=\"{2}\">{3}{4}</td><td>{5}</td><td>{6}</td><td><code>{7}</code></td><td>{8}</td><td>{9}</td><td>{10}</td><td>{11}</td><td>{12}</td></tr>",
            escape(&s.name),
            escape(&s.provider),
            state,
            state.replace('_', " "),
            if s.running && plan.is_some() { " (running)" } else { "" },
            ago(s.last_run, now),
            ago(s.last_success, now),
            s.source.as_ref().and_then(|src| src.commit.as_deref()).map(|c| &c[..c.len().min(12)]).unwrap_or("-"),
            n(|s| s.create),
            n(|s| s.update),
            n(|s| s.delete),
            n(|s| s.unmanaged),
            plan.map(|p| p.findings.len().to_string()).unwrap_or_default(),
        );
    }
    out.push_str("</table>\n");
    for s in statuses {
        let Some(plan) = &s.plan else { continue };
        if plan.error.is_none() && plan.changes.is_empty() && plan.findings.is_empty() && s.suspended.is_none() {
            continue;
        }
        let _ = writeln!(out, "<h2 id=\"{0}\">{0}</h2>", escape(&s.name));
        if let Some(sus) = &s.suspended {
            let _ = writeln!(
                out,
                "<p><b>Reconcile suspended</b> until {}: {}</p>",
                escape(&sus.until),
                escape(&sus.reason)
            );
        }
        if let Some(e) = &plan.error {
            let _ = writeln!(out, "<pre class=\"error\">{}</pre>", escape(e));
        }
        for c in &plan.changes {
            let who = c
                .changed_by
                .as_ref()
                .map(|b| format!(" — last changed by {}", escape(&b.who)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "<details><summary><code>{}</code> {}{who}</summary><pre>{}</pre></details>",
                escape(&c.id),
                c.action,
                diff_html(&c.diff)
            );
        }
        for f in &plan.findings {
            let _ = writeln!(
                out,
                "<p>[{}] <code>{}</code>: {}</p>",
                f.severity,
                escape(&f.id),
                escape(&f.message)
            );
        }
    }
    out.push_str("</body></html>\n");
    out
}
