//! Plans for people and programs: a Terraform-like text rendering (colour on
//! a terminal only), the JSON of docs/plan-format.md, and Markdown for pull-request
//! comments. Renderers only read a [`Plan`]; no provider is involved.

mod markdown;
mod text;

pub use markdown::{markdown, MARKDOWN_LIMIT};
pub use text::text;

use std::borrow::Cow;

use crate::plan::Plan;

/// Whether `c` must not reach a terminal or a rendered page as itself:
/// control characters (a newline could forge a plan's summary line, an
/// escape sequence could clear the screen) and the invisible characters
/// that reorder or split lines (bidirectional overrides, as in "Trojan
/// Source", and the Unicode line separators).
fn is_hazard(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}'
        )
}

/// The longest line of a diff the text and Markdown plans show whole.
pub const MAX_SHOWN_LINE: usize = 2000;

/// `line` cut at [`MAX_SHOWN_LINE`] characters with a note of how much was
/// left out: a 200 MB value must not be printed whole (the JSON plan keeps
/// it).
pub fn clip(line: &str) -> Cow<'_, str> {
    match line.char_indices().nth(MAX_SHOWN_LINE) {
        None => Cow::Borrowed(line),
        Some((cut, _)) => {
            let rest = line[cut..].chars().count();
            Cow::Owned(format!(
                "{} … ({rest} more characters; the whole value is in the JSON plan)",
                &line[..cut]
            ))
        }
    }
}

/// `text` made inert for a terminal: each hazardous character written as
/// an escape (`\n`, `\r`, `\t`, `\u001b`), so data from Git or a live
/// system reads as data. Text without any comes back borrowed.
pub fn inert(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_hazard) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_hazard(c) => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Markdown,
}

/// Renders `plan`; `color` only matters for text.
pub fn render(plan: &Plan, format: Format, color: bool) -> String {
    match format {
        Format::Text => text(plan, color),
        Format::Json => json(plan),
        Format::Markdown => markdown(plan),
    }
}

pub fn json(plan: &Plan) -> String {
    let mut out = serde_json::to_string_pretty(plan).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    out.push('\n');
    out
}

/// Whether to colour output written to a stream: only on a terminal, and
/// never when `NO_COLOR` is set to anything non-empty (no-color.org).
pub fn use_color(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_clipped_with_a_note() {
        assert!(matches!(clip("short"), Cow::Borrowed(_)));
        let long = "x".repeat(MAX_SHOWN_LINE + 500);
        let shown = clip(&long);
        assert!(shown.starts_with(&"x".repeat(MAX_SHOWN_LINE)));
        assert!(
            shown.ends_with("… (500 more characters; the whole value is in the JSON plan)"),
            "{shown}"
        );
    }

    #[test]
    fn inert_escapes_controls_and_invisible_reordering_only() {
        assert!(matches!(inert("plain ünïcode ✓"), Cow::Borrowed(_)));
        assert_eq!(inert("a\nb\r\tc\u{1b}[2J"), "a\\nb\\r\\tc\\u001b[2J");
        assert_eq!(inert("x\u{202e}y\u{2028}z\u{7f}"), "x\\u202ey\\u2028z\\u007f");
    }
}
