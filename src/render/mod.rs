//! Plans for people and programs: a Terraform-like text rendering (colour on
//! a terminal only), the SPEC §4 JSON, and Markdown for pull-request
//! comments. Renderers only read a [`Plan`]; no provider is involved.

mod markdown;
mod text;

pub use markdown::{markdown, MARKDOWN_LIMIT};
pub use text::text;

use crate::plan::Plan;

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
