//! plumb's core: configuration, sources, the plan engine, policies, renderers
//! and the commands that wire them to providers. Providers live in their own
//! crates under `providers/` and meet the core only through `plumb-model`.

pub mod config;
pub mod source;
