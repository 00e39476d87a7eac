//! Markdown for a pull-request comment: a summary table that always
//! survives, then each target's changes with their diffs, cut with a note
//! before GitHub's 65,536-character limit for a comment.

use std::fmt::Write as _;

use crate::plan::Plan;

/// GitHub refuses comments longer than this many characters.
pub const MARKDOWN_LIMIT: usize = 65_536;
/// Room kept for the closing note about what was cut.
const RESERVE: usize = 400;

pub fn markdown(plan: &Plan) -> String {
    let mut head = String::new();
    let status = match plan.exit_code {
        0 => "✅ in sync",
        2 => "⚠️ drift",
        _ => "❌ error",
    };
    let _ = writeln!(head, "## plumb plan: {status}\n");
    let src = &plan.source;
    let _ = writeln!(
        head,
        "Source {}{}{}\n",
        code(&src.url),
        src.reference
            .as_deref()
            .map(|r| format!(" @ {}", code(r)))
            .unwrap_or_default(),
        src.commit
            .as_deref()
            .map(|c| format!(" ({})", code(c.get(..c.len().min(12)).unwrap_or(c))))
            .unwrap_or_default()
    );
    head.push_str("| target | provider | status | create | update | delete | unmanaged | findings |\n");
    head.push_str("|---|---|---|---:|---:|---:|---:|---:|\n");
    let mut total = crate::plan::Summary::default();
    for t in &plan.targets {
        total.add(&t.summary);
        let status = match (&t.error, t.exit_code) {
            (Some(_), _) => "❌ error",
            (None, 2) => "⚠️ drift",
            _ => "✅ in sync",
        };
        let s = &t.summary;
        let _ = writeln!(
            head,
            "| {} | {} | {status} | {} | {} | {} | {} | {} |",
            escape(&t.name),
            escape(&t.provider),
            s.create,
            s.update,
            s.delete,
            s.unmanaged,
            t.findings.len()
        );
    }
    let _ = writeln!(
        head,
        "\n**Plan: {} to create, {} to update, {} to delete, {} unmanaged.**\n",
        total.create, total.update, total.delete, total.unmanaged
    );

    let mut sections: Vec<String> = Vec::new();
    for t in &plan.targets {
        if let Some(error) = &t.error {
            sections.push(format!(
                "### {} — error\n\n```\n{}\n```\n",
                escape(&t.name),
                block(error)
            ));
            continue;
        }
        if t.changes.is_empty() && t.findings.is_empty() && t.acknowledged.is_empty() {
            continue;
        }
        sections.push(format!("### {}\n", escape(&t.name)));
        for c in &t.changes {
            let mut s = format!(
                "<details><summary>{} {} {}</summary>\n\n",
                code(&c.id),
                super::text::marker(c.action),
                c.action
            );
            if let Some(by) = &c.changed_by {
                let _ = writeln!(
                    s,
                    "Last changed by {}{}\n",
                    code(&by.who),
                    by.when
                        .as_deref()
                        .map(|w| format!(" at {}", escape(w)))
                        .unwrap_or_default()
                );
            }
            if !c.paths.is_empty() {
                let _ = writeln!(
                    s,
                    "Paths: {}\n",
                    c.paths.iter().map(|p| code(p)).collect::<Vec<_>>().join(", ")
                );
            }
            let _ = write!(s, "```diff\n{}```\n</details>\n", block(&c.diff));
            sections.push(s);
        }
        for f in &t.findings {
            sections.push(format!(
                "- **{}** {}: {}\n",
                f.severity,
                code(&f.id),
                escape(&f.message)
            ));
        }
        for a in &t.acknowledged {
            sections.push(format!(
                "- acknowledged {} until {} ({:?}): {}\n",
                code(&a.id),
                escape(&a.until),
                a.status,
                escape(&a.reason)
            ));
        }
    }

    let mut out = head;
    let budget = MARKDOWN_LIMIT - RESERVE;
    let mut cut = 0;
    for s in &sections {
        if cut == 0 && out.chars().count() + s.chars().count() < budget {
            out.push_str(s);
            out.push('\n');
        } else {
            cut += 1;
        }
    }
    if cut > 0 {
        let _ = writeln!(
            out,
            "\n_{cut} more section(s) cut to stay within GitHub's comment limit; the full plan is in the JSON output (`plumb plan --format json`)._"
        );
    }
    out
}

/// Text for a table cell or a sentence: inert, no HTML, no Markdown that
/// could open or close a block (a `</details>`, a pipe ending a cell).
fn escape(text: &str) -> String {
    html(&super::inert(text))
        .replace('|', "\\|")
        .replace('`', "&#96;")
        .replace('*', "\\*")
        .replace('_', "\\_")
        .replace('[', "\\[")
}

/// Inline code as HTML (`<code>`), where entities are decoded and no
/// Markdown applies, so a backtick in the value cannot end it.
fn code(text: &str) -> String {
    format!("<code>{}</code>", html(&super::inert(text)))
}

/// The body of a fenced code block: a value cannot close the fence, and
/// control characters are escaped line by line.
fn block(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        out.push_str(
            &super::inert(&super::clip(body))
                .replace("```", "'''")
                .replace("~~~", "'''"),
        );
        out.push_str(newline);
    }
    out
}

fn html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
