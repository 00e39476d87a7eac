//! Paths into documents: JSON pointers (RFC 6901) in which an element of a
//! keyed list may be named by its key instead of its index,
//! `/spec/template/spec/containers[name=web]/image`. Used for changed paths
//! in plans and for the `paths` of ignore rules, where `*` matches any one
//! segment.

use std::fmt::Write as _;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    Field(String),
    Index(usize),
    /// An element of a keyed list, by its key fields and their values.
    Keyed(Vec<(String, String)>),
    /// Only in patterns: any one segment.
    Any,
}

/// Renders segments as a path string; the root is `/`.
pub fn render(segments: &[Segment]) -> String {
    if segments.is_empty() {
        return "/".to_string();
    }
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Field(name) => {
                out.push('/');
                out.push_str(&name.replace('~', "~0").replace('/', "~1"));
            }
            Segment::Index(index) => {
                let _ = write!(out, "/{index}");
            }
            Segment::Keyed(pairs) => {
                out.push('[');
                for (i, (key, value)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{key}={value}");
                }
                out.push(']');
            }
            Segment::Any => out.push_str("/*"),
        }
    }
    out
}

/// Parses a path or pattern. `*` is [`Segment::Any`]; a segment of digits is
/// an index when it meets an array and a field name when it meets an object.
pub fn parse(path: &str) -> Result<Vec<Segment>, String> {
    let trimmed = path.trim();
    if trimmed == "/" || trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = trimmed.strip_prefix('/') else {
        return Err(format!("path {path:?} must start with '/'"));
    };
    let mut segments = Vec::new();
    for raw in rest.split('/') {
        let (field, keyed) = match raw.find('[') {
            Some(open) if raw.ends_with(']') => (&raw[..open], Some(&raw[open + 1..raw.len() - 1])),
            _ => (raw, None),
        };
        if field == "*" {
            segments.push(Segment::Any);
        } else if !field.is_empty() || keyed.is_none() {
            segments.push(Segment::Field(field.replace("~1", "/").replace("~0", "~")));
        }
        if let Some(keyed) = keyed {
            let mut pairs = Vec::new();
            for pair in keyed.split(',') {
                let Some((key, value)) = pair.split_once('=') else {
                    return Err(format!("path {path:?}: expected key=value inside [...], got {pair:?}"));
                };
                pairs.push((key.trim().to_string(), value.trim().to_string()));
            }
            segments.push(Segment::Keyed(pairs));
        }
    }
    Ok(segments)
}

/// Whether pattern segment `pattern` names path segment `segment`.
fn segment_matches(pattern: &Segment, segment: &Segment) -> bool {
    match (pattern, segment) {
        (Segment::Any, _) => true,
        (Segment::Field(p), Segment::Index(i)) => p.parse::<usize>().ok() == Some(*i),
        (a, b) => a == b,
    }
}

/// Whether `pattern` covers `path`: it names the path or one of its
/// ancestors (ignoring `/metadata/annotations` ignores every annotation).
pub fn covers(pattern: &[Segment], path: &[Segment]) -> bool {
    pattern.len() <= path.len() && pattern.iter().zip(path).all(|(p, s)| segment_matches(p, s))
}

/// The text form of a scalar used as a list key value.
pub fn key_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whether array element `element` is the one `pairs` names.
pub fn element_has_key(element: &Value, pairs: &[(String, String)]) -> bool {
    pairs
        .iter()
        .all(|(key, value)| element.get(key).and_then(key_text).is_some_and(|v| &v == value))
}

/// Removes everything `pattern` names from `value`. Used to drop ignored
/// paths from both sides before comparing and rendering.
pub fn remove(value: &mut Value, pattern: &[Segment]) {
    let Some((first, rest)) = pattern.split_first() else {
        return;
    };
    let last = rest.is_empty();
    match value {
        Value::Object(map) => {
            if last {
                match first {
                    Segment::Any => map.clear(),
                    Segment::Field(name) => {
                        map.remove(name);
                    }
                    _ => {}
                }
            } else {
                for (key, child) in map.iter_mut() {
                    if segment_matches(first, &Segment::Field(key.clone())) {
                        remove(child, rest);
                    }
                }
            }
        }
        Value::Array(items) => {
            let hit = |i: usize, item: &Value| match first {
                Segment::Any => true,
                Segment::Index(n) => *n == i,
                Segment::Field(f) => f.parse::<usize>().ok() == Some(i),
                Segment::Keyed(pairs) => element_has_key(item, pairs),
            };
            if last {
                let mut index = 0;
                items.retain(|item| {
                    let keep = !hit(index, item);
                    index += 1;
                    keep
                });
            } else {
                for (i, item) in items.iter_mut().enumerate() {
                    if hit(i, item) {
                        remove(item, rest);
                    }
                }
            }
        }
        _ => {}
    }
}

/// Replaces each value `pattern` names with what `replace` makes of it.
pub fn replace_matching(value: &mut Value, pattern: &[Segment], replace: &dyn Fn(&Value) -> Value) {
    let Some((first, rest)) = pattern.split_first() else {
        *value = replace(value);
        return;
    };
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if segment_matches(first, &Segment::Field(key.clone())) {
                    replace_matching(child, rest, replace);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let hit = match first {
                    Segment::Any => true,
                    Segment::Index(n) => *n == i,
                    Segment::Field(f) => f.parse::<usize>().ok() == Some(i),
                    Segment::Keyed(pairs) => element_has_key(item, pairs),
                };
                if hit {
                    replace_matching(item, rest, replace);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_and_parses_keyed_paths() {
        let path = "/spec/template/spec/containers[name=web]/ports[containerPort=80,protocol=TCP]/name";
        let segments = parse(path).unwrap();
        assert_eq!(segments.len(), 8);
        assert_eq!(render(&segments), path);
        assert_eq!(
            render(&parse("/metadata/annotations/a~1b").unwrap()),
            "/metadata/annotations/a~1b"
        );
        assert_eq!(
            parse("/metadata/annotations/a~1b").unwrap()[2],
            Segment::Field("a/b".into())
        );
    }

    #[test]
    fn patterns_cover_descendants_and_wildcards() {
        let pattern = parse("/metadata/annotations").unwrap();
        assert!(covers(&pattern, &parse("/metadata/annotations/x").unwrap()));
        assert!(!covers(&pattern, &parse("/metadata").unwrap()));
        let star = parse("/spec/*/image").unwrap();
        assert!(covers(&star, &parse("/spec/containers/image").unwrap()));
        let keyed = parse("/containers/*/image").unwrap();
        assert!(covers(&keyed, &parse("/containers[name=web]/image").unwrap()));
        assert!(covers(
            &parse("/items/0").unwrap(),
            &[Segment::Field("items".into()), Segment::Index(0)]
        ));
    }

    #[test]
    fn remove_drops_named_values_only() {
        let mut doc = json!({
            "metadata": {"annotations": {"a": "1", "b": "2"}, "name": "x"},
            "containers": [{"name": "web", "image": "v1"}, {"name": "side", "image": "v2"}]
        });
        remove(&mut doc, &parse("/metadata/annotations/a").unwrap());
        remove(&mut doc, &parse("/containers[name=web]/image").unwrap());
        assert_eq!(
            doc,
            json!({
                "metadata": {"annotations": {"b": "2"}, "name": "x"},
                "containers": [{"name": "web"}, {"name": "side", "image": "v2"}]
            })
        );
        remove(&mut doc, &parse("/containers/*").unwrap());
        assert_eq!(doc["containers"], json!([]));
    }

    #[test]
    fn bad_keyed_segment_is_an_error() {
        assert!(parse("/a[name]").is_err());
        assert!(parse("a/b").is_err());
    }
}
