//! Git sources (to be written).
use std::path::Path;

use super::{Checkout, SourceError};
use crate::config::GitSpec;

/// Fetches `spec.url` into the cache below `state_dir` and checks out `reference`.
pub fn checkout(spec: &GitSpec, reference: &str, state_dir: &Path) -> Result<Checkout, SourceError> {
    let _ = (spec, state_dir);
    Err(SourceError::UnknownRef { url: spec.url.clone(), reference: reference.to_string() })
}
