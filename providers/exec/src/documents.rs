//! The document form shared by desired files, the live command's output and
//! imported files: a mapping with a string `id`, an optional `kind`, and any
//! other keys. The whole mapping is the resource body, on both sides, so an
//! imported file reads back as exactly what the command printed.

use std::collections::HashMap;
use std::path::Path;

use plumb_model::files::{self, Document};
use plumb_model::{Authority, ChangedBy, Origin, ProviderError, Resource, Sensitivity};
use serde_json::{Map, Value};

use crate::connection::type_name;

/// The key a live document may carry for plumb's bookkeeping; it is moved
/// out of the body so it never shows as drift.
pub const META_KEY: &str = "$meta";

/// Kind of documents whose id has no `/` and that set no `kind`.
pub const DEFAULT_KIND: &str = "document";

/// The kind of a document: its `kind` key, else the id's first segment.
fn kind_of(id: &str, doc: &Map<String, Value>) -> Result<String, String> {
    match doc.get("kind") {
        Some(Value::String(kind)) if !kind.is_empty() => Ok(kind.clone()),
        Some(other) => Err(format!("`kind` must be a non-empty string, got {}", type_name(other))),
        None => Ok(match id.split_once('/') {
            Some((first, _)) if !first.is_empty() => first.to_string(),
            _ => DEFAULT_KIND.to_string(),
        }),
    }
}

/// Checks the common form and builds the resource, handing back the
/// `$meta` mapping it took out of the body (empty when there was none).
fn to_resource(value: Value, sensitive: &[String]) -> Result<(Resource, Map<String, Value>), String> {
    let Value::Object(mut doc) = value else {
        return Err(format!(
            "a document must be a mapping with a string `id`, got {}",
            type_name(&value)
        ));
    };
    let id = match doc.get("id") {
        Some(Value::String(id)) if !id.trim().is_empty() => id.clone(),
        Some(Value::String(_)) => return Err("`id` is empty".to_string()),
        Some(other) => return Err(format!("`id` must be a string, got {}", type_name(other))),
        None => return Err("the document has no `id` (every document needs a string `id`)".to_string()),
    };
    let kind = kind_of(&id, &doc)?;
    // Taken out before the body is built; the caller decides whether it is
    // allowed here.
    let meta = match doc.remove(META_KEY) {
        Some(Value::Object(meta)) => meta,
        Some(Value::Null) | None => Map::new(),
        Some(other) => return Err(format!("`{META_KEY}` must be a mapping, got {}", type_name(&other))),
    };
    let mut resource = Resource::new(id, kind, Value::Object(doc));
    if !sensitive.is_empty() {
        resource.sensitive = Sensitivity::Paths(sensitive.to_vec());
    }
    Ok((resource, meta))
}

/// Options that shape every document of a target.
#[derive(Debug, Clone, Copy)]
pub struct Shape<'a> {
    pub sensitive: &'a [String],
    pub authority: Authority,
}

/// Reads every `.yaml`, `.yml` and `.json` file below `dir`.
pub fn read_desired(root: &Path, dir: &Path, shape: Shape<'_>) -> Result<Vec<Resource>, ProviderError> {
    let mut resources = Vec::new();
    let mut seen: HashMap<String, Origin> = HashMap::new();
    for path in files::walk(dir, &["yaml", "yml", "json"])? {
        for document in files::read_documents(root, &path)? {
            for (value, origin, item) in expand(&path, document) {
                let parse_error = |message: String| ProviderError::Parse {
                    origin: origin.clone(),
                    message: match item {
                        Some(n) => format!("list item {n}: {message}"),
                        None => message,
                    },
                };
                let had_meta = value.get(META_KEY).is_some();
                let (resource, _) = to_resource(value, shape.sensitive).map_err(parse_error)?;
                if had_meta {
                    return Err(parse_error(format!(
                        "`{META_KEY}` is only for documents printed by the live command; \
                         remove it from desired state"
                    )));
                }
                if let Some(first) = seen.get(&resource.id) {
                    return Err(ProviderError::DuplicateId {
                        id: resource.id,
                        first: first.clone(),
                        second: origin,
                    });
                }
                seen.insert(resource.id.clone(), origin.clone());
                resources.push(resource.with_origin(origin).with_authority(shape.authority));
            }
        }
    }
    Ok(resources)
}

/// One parsed document, or the items of a top-level list, each with the
/// best origin known: for list items the line of their `id` when it can be
/// found in the text, else the list's own line; and the 1-based item number.
fn expand(path: &Path, document: Document) -> Vec<(Value, Origin, Option<usize>)> {
    let Document { value, origin } = document;
    let Value::Array(items) = value else {
        return vec![(value, origin, None)];
    };
    // Lines are only searched for lists, so the file is read a second time
    // only where that helps a message.
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let mut cursor = origin.line.unwrap_or(1).saturating_sub(1);
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let mut item_origin = origin.clone();
            if let Some(Value::String(id)) = item.get("id") {
                if let Some(found) = (cursor..lines.len()).find(|&i| is_id_line(lines[i], id)) {
                    item_origin.line = Some(found + 1);
                    cursor = found + 1;
                }
            }
            (item, item_origin, Some(index + 1))
        })
        .collect()
}

/// Whether `line` is `id: <id>` in YAML or JSON spelling (`- id: x`,
/// `"id": "x",`, `{"id": "x"}`), so a list item's error can point at it.
fn is_id_line(line: &str, id: &str) -> bool {
    let rest = line.trim_start_matches(|c: char| c.is_whitespace() || "-{[,".contains(c));
    for key in ["\"id\"", "'id'", "id"] {
        let Some(after) = rest.strip_prefix(key) else {
            continue;
        };
        let Some(value) = after.trim_start().strip_prefix(':') else {
            continue;
        };
        let mut value = value.trim();
        if let Some(comment) = value.find(" #") {
            value = value[..comment].trim_end();
        }
        for quote in ['"', '\''] {
            if let Some(inner) = value.strip_prefix(quote) {
                // Up to the closing quote: `{"id": "a", "x": 1}` on one line.
                return inner.split(quote).next() == Some(id);
            }
        }
        // Unquoted: all of it, or up to the next flow separator
        // (`- { id: a, x: 1 }`).
        return match value.strip_prefix(id) {
            Some(rest) => {
                let rest = rest.trim_start();
                rest.is_empty() || rest.starts_with([',', '}', ']'])
            }
            None => false,
        };
    }
    false
}

/// Parses what the live command printed. Errors are messages; the caller
/// wraps them with the command and its stderr.
pub fn parse_live(stdout: &[u8], shape: Shape<'_>) -> Result<Vec<Resource>, String> {
    if stdout.iter().all(|b| b.is_ascii_whitespace()) {
        return Err("printed nothing on stdout (print [] when there are no documents)".to_string());
    }
    let value: Value = serde_json::from_slice(stdout).map_err(|e| {
        format!(
            "printed invalid JSON on stdout at line {}, column {}: {}",
            e.line(),
            e.column(),
            plumb_model::files::without_location(&e.to_string())
        )
    })?;
    let Value::Array(items) = value else {
        return Err(format!(
            "printed {} on stdout; expected a JSON array of documents",
            type_name(&value)
        ));
    };
    let mut resources = Vec::with_capacity(items.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, item) in items.into_iter().enumerate() {
        let n = index + 1;
        let (mut resource, meta) = to_resource(item, shape.sensitive).map_err(|m| format!("document {n}: {m}"))?;
        apply_meta(&mut resource, meta).map_err(|m| format!("document {n} ({}): {m}", resource.id))?;
        if let Some(first) = seen.insert(resource.id.clone(), n) {
            return Err(format!("printed id {} twice (documents {first} and {n})", resource.id));
        }
        resource.authority = shape.authority;
        resources.push(resource);
    }
    Ok(resources)
}

/// Moves `$meta.version` and `$meta.changed_by` onto the resource.
fn apply_meta(resource: &mut Resource, mut meta: Map<String, Value>) -> Result<(), String> {
    match meta.remove("version") {
        None | Some(Value::Null) => {}
        Some(Value::String(v)) => resource.version = Some(v),
        Some(Value::Number(v)) => resource.version = Some(v.to_string()),
        Some(other) => {
            return Err(format!(
                "`{META_KEY}.version` must be a string, got {}",
                type_name(&other)
            ))
        }
    }
    match meta.remove("changed_by") {
        None | Some(Value::Null) => {}
        Some(Value::Object(mut by)) => {
            let who = match by.remove("who") {
                Some(Value::String(who)) if !who.is_empty() => who,
                _ => return Err(format!("`{META_KEY}.changed_by.who` must be a non-empty string")),
            };
            let when = match by.remove("when") {
                None | Some(Value::Null) => None,
                Some(Value::String(when)) => Some(when),
                Some(other) => {
                    return Err(format!(
                        "`{META_KEY}.changed_by.when` must be a string, got {}",
                        type_name(&other)
                    ))
                }
            };
            if let Some(key) = by.keys().next() {
                return Err(format!(
                    "unknown key `{META_KEY}.changed_by.{key}` (expected who, when)"
                ));
            }
            resource.changed_by = Some(ChangedBy { who, when });
        }
        Some(other) => {
            return Err(format!(
                "`{META_KEY}.changed_by` must be a mapping with `who` and `when`, got {}",
                type_name(&other)
            ))
        }
    }
    if let Some(key) = meta.keys().next() {
        return Err(format!("unknown key `{META_KEY}.{key}` (expected version, changed_by)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PLAIN: Shape<'static> = Shape {
        sensitive: &[],
        authority: Authority::Foreign,
    };

    #[test]
    fn kind_from_key_or_first_segment() {
        let live = parse_live(
            br#"[{"id": "user/alice"}, {"id": "alice"}, {"id": "x/y", "kind": "Thing"}, {"id": "/abs"}]"#,
            PLAIN,
        )
        .unwrap();
        let kinds: Vec<_> = live.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(kinds, vec!["user", "document", "Thing", "document"]);
        // The body is the whole document, id included.
        assert_eq!(live[2].body(), json!({"id": "x/y", "kind": "Thing"}));
    }

    #[test]
    fn meta_moves_out_of_the_body() {
        let live = parse_live(
            br#"[{"id": "a", "x": 1, "$meta": {"version": 7, "changed_by": {"who": "alice", "when": "2024-05-01T10:00:00Z"}}}]"#,
            PLAIN,
        )
        .unwrap();
        assert_eq!(live[0].body(), json!({"id": "a", "x": 1}));
        assert_eq!(live[0].version.as_deref(), Some("7"));
        assert_eq!(
            live[0].changed_by,
            Some(ChangedBy {
                who: "alice".into(),
                when: Some("2024-05-01T10:00:00Z".into())
            })
        );
    }

    #[test]
    fn bad_live_output_is_explained() {
        for (out, needle) in [
            (&b"  \n"[..], "printed nothing"),
            (b"{\"id\": \"a\"}", "expected a JSON array"),
            (b"[1]", "document 1: a document must be a mapping"),
            (
                b"[{\"id\": \"a\"}, {\"name\": \"b\"}]",
                "document 2: the document has no `id`",
            ),
            (b"[{\"id\": 5}]", "`id` must be a string"),
            (
                b"[{\"id\": \"a\"}, {\"id\": \"a\"}]",
                "printed id a twice (documents 1 and 2)",
            ),
            (
                b"[{\"id\": \"a\", \"$meta\": {\"vrsion\": \"1\"}}]",
                "unknown key `$meta.vrsion`",
            ),
            (b"[{\"id\": \"a\", \"$meta\": {\"changed_by\": {}}}]", "changed_by.who"),
            (b"[{\"id\": \"a\", \"kind\": 3}]", "`kind` must be"),
            (b"[\n{\"id\": \"a\",}\n]", "line 2, column"),
        ] {
            let err = parse_live(out, PLAIN).unwrap_err();
            assert!(err.contains(needle), "{}: {err}", String::from_utf8_lossy(out));
        }
    }

    #[test]
    fn sensitivity_and_authority_apply_to_every_document() {
        let sensitive = vec!["/password".to_string()];
        let live = parse_live(
            br#"[{"id": "a"}, {"id": "b"}]"#,
            Shape {
                sensitive: &sensitive,
                authority: Authority::Owned,
            },
        )
        .unwrap();
        for r in live {
            assert_eq!(r.sensitive, Sensitivity::Paths(sensitive.clone()));
            assert_eq!(r.authority, Authority::Owned);
        }
    }

    #[test]
    fn id_lines_in_yaml_and_json_spelling() {
        assert!(is_id_line("- id: user/alice", "user/alice"));
        assert!(is_id_line("  id: 'user/alice'  # the boss", "user/alice"));
        assert!(is_id_line("  {\"id\": \"a\", ", "a"));
        assert!(is_id_line("    \"id\": \"a\",", "a"));
        assert!(!is_id_line("  name: a", "a"));
        assert!(!is_id_line("  idx: a", "a"));
        assert!(!is_id_line("  id: ab", "a"));
        assert!(is_id_line("- { id: flag/a, on: true }", "flag/a"));
        assert!(!is_id_line("- { id: flag/ab, on: true }", "flag/a"));
        assert!(is_id_line("[{\"id\": \"a\", \"x\": 1},", "a"));
    }
}
