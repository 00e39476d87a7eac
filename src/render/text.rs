//! The text plan: one block per target, `+`/`~`/`-`/`?` markers, the diff
//! indented below each change, and Terraform's closing line.

use std::fmt::Write as _;

use plumb_model::Action;

use super::inert;
use crate::plan::{Plan, Summary};
use crate::policy::AckStatus;

struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn green(&self, t: &str) -> String {
        self.wrap("32", t)
    }
    fn yellow(&self, t: &str) -> String {
        self.wrap("33", t)
    }
    fn red(&self, t: &str) -> String {
        self.wrap("31", t)
    }
    fn cyan(&self, t: &str) -> String {
        self.wrap("36", t)
    }
    fn bold(&self, t: &str) -> String {
        self.wrap("1", t)
    }
}

pub fn marker(action: Action) -> &'static str {
    match action {
        Action::Create => "+",
        Action::Update => "~",
        Action::Delete => "-",
        Action::Unmanaged => "?",
    }
}

pub fn text(plan: &Plan, color: bool) -> String {
    let paint = Paint { on: color };
    let mut out = String::new();
    let src = &plan.source;
    let _ = write!(out, "Source: {}", inert(&src.url));
    if let Some(r) = &src.reference {
        let _ = write!(out, " @ {}", inert(r));
    }
    if let Some(c) = &src.commit {
        let _ = write!(out, " ({})", inert(c.get(..c.len().min(12)).unwrap_or(c)));
    }
    if let Some(s) = &src.subject {
        let _ = write!(out, " \"{}\"", inert(s));
    }
    out.push_str("\n\n");

    let mut total = Summary::default();
    let mut failed = 0;
    for target in &plan.targets {
        total.add(&target.summary);
        let title = paint.bold(&format!("{} ({})", inert(&target.name), inert(&target.provider)));
        if let Some(error) = &target.error {
            failed += 1;
            let _ = writeln!(out, "{title}: {}", paint.red("error"));
            for line in error.lines() {
                let _ = writeln!(out, "  {}", inert(line));
            }
            out.push('\n');
            continue;
        }
        let s = &target.summary;
        let state = if target.changes.is_empty() {
            paint.green("in sync")
        } else {
            paint.yellow("drift")
        };
        let _ = writeln!(
            out,
            "{title}: {state}, {} in sync, {} to create, {} to update, {} to delete, {} unmanaged",
            s.in_sync, s.create, s.update, s.delete, s.unmanaged
        );
        if let Some(own) = &target.source {
            let _ = writeln!(
                out,
                "  source: {} @ {}",
                inert(&own.url),
                inert(own.commit.as_deref().unwrap_or("-"))
            );
        }
        for change in &target.changes {
            let mark = marker(change.action);
            let mark = match change.action {
                Action::Create => paint.green(mark),
                Action::Update => paint.yellow(mark),
                Action::Delete => paint.red(mark),
                Action::Unmanaged => paint.cyan(mark),
            };
            let _ = write!(out, "  {mark} {} ({})", inert(&change.id), change.action);
            if let Some(by) = &change.changed_by {
                let _ = write!(out, ", last changed by {}", inert(&by.who));
                if let Some(when) = &by.when {
                    let _ = write!(out, " at {}", inert(when));
                }
            }
            out.push('\n');
            if let Some(origin) = &change.origin {
                let _ = writeln!(out, "      desired: {}", inert(&origin.to_string()));
            }
            if !change.paths.is_empty() {
                let _ = writeln!(out, "      paths: {}", inert(&change.paths.join(", ")));
            }
            for line in change
                .diff
                .lines()
                .filter(|l| !l.starts_with("---") && !l.starts_with("+++"))
            {
                let clipped = super::clip(line);
                let line = &*inert(&clipped);
                let painted = if line.starts_with('+') {
                    paint.green(line)
                } else if line.starts_with('-') {
                    paint.red(line)
                } else if line.starts_with("@@") {
                    paint.cyan(line)
                } else {
                    line.to_string()
                };
                let _ = writeln!(out, "      {painted}");
            }
        }
        for finding in &target.findings {
            let _ = writeln!(
                out,
                "  ! [{}] {}: {}",
                finding.severity,
                inert(&finding.id),
                inert(&finding.message)
            );
        }
        for ack in &target.acknowledged {
            let status = match ack.status {
                AckStatus::InForce => "acknowledged",
                AckStatus::Expiring => "acknowledged, expires soon",
                AckStatus::Expired => "acknowledgement EXPIRED",
            };
            let _ = writeln!(
                out,
                "  = {} {} ({status} until {}: {})",
                inert(&ack.id),
                inert(&ack.paths.join(", ")),
                inert(&ack.until),
                inert(&ack.reason)
            );
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "{}",
        paint.bold(&format!(
            "Plan: {} to create, {} to update, {} to delete, {} unmanaged.",
            total.create, total.update, total.delete, total.unmanaged
        ))
    );
    if failed > 0 {
        let _ = writeln!(out, "{}", paint.red(&format!("{failed} target(s) failed.")));
    }
    out
}
