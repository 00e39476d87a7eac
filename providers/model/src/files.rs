//! Reading desired-state files: finding them below a directory in a stable
//! order and parsing YAML (multi-document) or JSON into documents that
//! remember their file and starting line, with errors that name file, line
//! and column. Shared so every provider reports bad input the same way.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{Origin, ProviderError};

/// Files below `dir` whose extension is one of `extensions`, sorted by path
/// so ids, errors and plans come out in the same order on every machine.
/// Hidden files and directories (`.git`) are skipped.
pub fn walk(dir: &Path, extensions: &[&str]) -> Result<Vec<PathBuf>, ProviderError> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current).map_err(|e| ProviderError::io(&current, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ProviderError::io(&current, e))?;
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if hidden {
                continue;
            }
            let file_type = entry.file_type().map_err(|e| ProviderError::io(&path, e))?;
            if file_type.is_dir() {
                pending.push(path);
            } else if has_extension(&path, extensions) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// `path` relative to `root` for messages and origins; unchanged when it is
/// not below `root`.
pub fn relative(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(root).unwrap_or(path).to_path_buf()
}

/// Reads a desired file as text, refusing one over `limits.max_file_size`
/// before reading it (a file of gigabytes in a pull request must not take
/// the daemon's memory).
pub fn read_text(root: &Path, path: &Path) -> Result<String, ProviderError> {
    let limit = crate::limits::max_file_size();
    let size = std::fs::metadata(path).map_err(|e| ProviderError::io(path, e))?.len();
    if size > limit {
        return Err(ProviderError::Parse {
            origin: Origin {
                file: relative(root, path),
                line: None,
            },
            message: format!(
                "the file is {}, over limits.max_file_size ({}); split it or raise the limit",
                crate::limits::human(size),
                crate::limits::human(limit)
            ),
        });
    }
    std::fs::read_to_string(path).map_err(|e| ProviderError::io(path, e))
}

/// One parsed document and where it starts.
#[derive(Debug, Clone)]
pub struct Document {
    pub value: Value,
    pub origin: Origin,
}

/// Reads `path` and parses it by extension: `.json` as one JSON value,
/// anything else as YAML with any number of `---`-separated documents. Empty
/// documents (a trailing `---`, a file of comments) are left out.
pub fn read_documents(root: &Path, path: &Path) -> Result<Vec<Document>, ProviderError> {
    let text = read_text(root, path)?;
    // A byte order mark is no content (editors on Windows write one).
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let file = relative(root, path);
    if has_extension(path, &["json"]) {
        parse_json(&file, text).map(|value| {
            vec![Document {
                value,
                origin: Origin { file, line: Some(1) },
            }]
        })
    } else {
        parse_yaml_documents(&file, text)
    }
}

/// A `serde_json::Value` that refuses a mapping with the same key twice:
/// YAML and JSON parsers keep the last one silently, which would audit a
/// document that is not what its author saw.
struct Strict(Value);

struct StrictVisitor;

const DUPLICATE: &str = "duplicate key ";

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML or JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        serde::Deserialize::deserialize(d).map(|Strict(v)| v)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("{DUPLICATE}{key:?}")));
            }
            let Strict(value) = map.next_value()?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

/// For a duplicate-key error reported near `line` (1-based, in `text`):
/// the two lines that name the key in one mapping, found as the closest
/// pair at the same indentation with nothing less indented between them.
/// Parsers report one position only, and not always the second key's.
fn duplicate_pair(text: &str, message: &str, line: usize) -> Option<(usize, usize)> {
    let start = message.find(DUPLICATE)? + DUPLICATE.len();
    let key: String = serde_json::from_str(message[start..].split(" at line ").next()?.trim()).ok()?;
    let quoted = format!("{key:?}");
    let lines: Vec<&str> = text.lines().collect();
    let indent_of = |l: &str| l.len() - l.trim_start_matches([' ', '-']).len();
    let names_key = |l: &str| {
        let t = l.trim_start_matches([' ', '-', '{', ',']).trim_start();
        [
            format!("{key}:"),
            format!("{quoted}:"),
            format!("'{key}':"),
            format!("{quoted} :"),
        ]
        .iter()
        .any(|p| t.starts_with(p.as_str()))
    };
    let hits: Vec<usize> = (0..lines.len()).filter(|&i| names_key(lines[i])).collect();
    let mut best: Option<(usize, usize)> = None;
    for (n, &a) in hits.iter().enumerate() {
        for &b in &hits[n + 1..] {
            let indent = indent_of(lines[a]);
            let same_mapping = indent_of(lines[b]) == indent
                && lines[a + 1..b].iter().all(|l| {
                    let t = l.trim();
                    t.is_empty() || t.starts_with('#') || indent_of(l) >= indent || t.starts_with(['}', ']'])
                });
            if !same_mapping {
                continue;
            }
            let distance = |(x, y): (usize, usize)| (y + 1).abs_diff(line).min((x + 1).abs_diff(line));
            if best.is_none_or(|current| distance((a, b)) < distance(current)) {
                best = Some((a, b));
            }
            break;
        }
    }
    best.map(|(a, b)| (a + 1, b + 1))
}

fn duplicate_message(text: &str, message: &str, line: usize) -> String {
    let message = without_location(message);
    match duplicate_pair(text, &message, line) {
        Some((first, again)) if message.contains(DUPLICATE) => {
            format!("{message}: first at line {first}, again at line {again}; keep one of them")
        }
        _ => message,
    }
}

/// Parses JSON, reporting line and column of a syntax error.
pub fn parse_json(file: &Path, text: &str) -> Result<Value, ProviderError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    serde_json::from_str::<Strict>(text)
        .map(|Strict(v)| v)
        .map_err(|e| ProviderError::Parse {
            origin: Origin {
                file: file.to_path_buf(),
                line: Some(e.line()),
            },
            message: format!(
                "invalid JSON at column {}: {}",
                e.column(),
                duplicate_message(text, &e.to_string(), e.line())
            ),
        })
}

/// Parses a YAML stream into its documents. The stream is cut at document
/// markers (`---` or `...` at the start of a line, which YAML reserves for
/// that) so each document's start line is known; each piece is then parsed
/// by serde_yaml_ng and its error lines shifted back to file lines.
pub fn parse_yaml_documents(file: &Path, text: &str) -> Result<Vec<Document>, ProviderError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut documents = Vec::new();
    for (first_line, chunk) in split_documents(text) {
        if chunk.lines().all(|l| {
            let t = l.trim();
            t.is_empty() || t.starts_with('#') || t.starts_with('%')
        }) {
            continue;
        }
        let value: Value = serde_yaml_ng::from_str::<Strict>(&chunk)
            .map(|Strict(v)| v)
            .map_err(|e| {
                let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1));
                let message = duplicate_message(&chunk, &e.to_string(), line);
                // Lines in the message are the chunk's; make them the file's.
                let message = shift_lines(&message, first_line - 1);
                ProviderError::Parse {
                    origin: Origin {
                        file: file.to_path_buf(),
                        line: Some(first_line + line - 1),
                    },
                    message: format!("invalid YAML at column {column}: {message}"),
                }
            })?;
        if value.is_null() {
            continue;
        }
        let content_line = chunk
            .lines()
            .position(|l| {
                let t = l.trim();
                !(t.is_empty() || t.starts_with('#') || t.starts_with("---"))
            })
            .map(|offset| first_line + offset)
            .unwrap_or(first_line);
        documents.push(Document {
            value,
            origin: Origin {
                file: file.to_path_buf(),
                line: Some(content_line),
            },
        });
    }
    Ok(documents)
}

/// Splits at document markers, keeping each piece's 1-based first line. The
/// marker line itself stays with the document it opens (`--- !tag` or
/// `--- key: value` may carry content), minus the marker.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let is_start = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        let is_end = line == "..." || line.starts_with("... ");
        if is_start || is_end {
            pieces.push((start, std::mem::take(&mut current)));
            start = line_no;
            if is_start {
                // Keep the line count aligned: the marker becomes a blank
                // line, and anything after it on the line stays.
                current.push_str(line[3..].trim_start());
                current.push('\n');
            } else {
                current.push('\n');
            }
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    pieces.push((start, current));
    pieces
}

/// Adds `by` to the numbers of "first at line N, again at line M".
fn shift_lines(message: &str, by: usize) -> String {
    let Some(at) = message.find(": first at line ") else {
        return message.to_string();
    };
    let numbers: Vec<usize> = message[at..]
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    match numbers.as_slice() {
        [first, again] => format!(
            "{}: first at line {}, again at line {}; keep one of them",
            &message[..at],
            first + by,
            again + by
        ),
        _ => message.to_string(),
    }
}

/// A serde error message without serde's own " at line L column C" tail,
/// for messages that put the file and line in front themselves.
pub fn without_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_errors_naming_both_lines() {
        let text = "a: 1\n---\nid: x\nspec:\n  replicas: 1\n  image: a\n  replicas: 3\n";
        let err = parse_yaml_documents(Path::new("d.yaml"), text).unwrap_err().to_string();
        assert!(err.contains("d.yaml:"), "{err}");
        assert!(
            err.contains("duplicate key \"replicas\": first at line 5, again at line 7"),
            "{err}"
        );
        let json = "{\n  \"id\": \"x\",\n  \"role\": \"admin\",\n  \"role\": \"owner\"\n}";
        let err = parse_json(Path::new("d.json"), json).unwrap_err().to_string();
        assert!(
            err.contains("duplicate key \"role\": first at line 3, again at line 4"),
            "{err}"
        );
        // The same key in different mappings is fine.
        parse_yaml_documents(Path::new("ok.yaml"), "a: {x: 1}\nb: {x: 2}\n").unwrap();
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let docs = parse_yaml_documents(Path::new("b.yaml"), "\u{feff}id: a\n").unwrap();
        assert_eq!(docs[0].value["id"], "a");
        assert_eq!(parse_json(Path::new("b.json"), "\u{feff}{\"id\": 1}").unwrap()["id"], 1);
    }

    #[test]
    fn documents_carry_their_start_line() {
        let text = "# header\na: 1\n---\n\nb: 2\n---\n---\n# only a comment\n---\nc: 3\n";
        let docs = parse_yaml_documents(Path::new("f.yaml"), text).unwrap();
        let lines: Vec<_> = docs.iter().map(|d| d.origin.line.unwrap()).collect();
        assert_eq!(lines, vec![2, 5, 10]);
        assert_eq!(docs[2].value["c"], 3);
    }

    #[test]
    fn yaml_error_names_file_line_in_whole_file() {
        let text = "a: 1\n---\nb: 2\nc: [unclosed\nd: 4\n";
        let err = parse_yaml_documents(Path::new("dir/f.yaml"), text).unwrap_err();
        let ProviderError::Parse { origin, message } = &err else {
            panic!("unexpected {err:?}")
        };
        assert_eq!(origin.file, Path::new("dir/f.yaml"));
        // The flow sequence opened on line 4 is reported on line 4 or 5,
        // never on a line of the first document.
        assert!(origin.line.unwrap() >= 4, "{err}");
        assert!(message.contains("invalid YAML"), "{message}");
        assert!(err.to_string().starts_with("dir/f.yaml:"), "{err}");
    }

    #[test]
    fn json_error_names_line() {
        let err = parse_json(Path::new("x.json"), "{\n  \"a\": 1,\n  \"b\": \n}\n").unwrap_err();
        let ProviderError::Parse { origin, .. } = err else {
            panic!()
        };
        assert_eq!(origin.line, Some(4));
    }

    #[test]
    fn marker_with_content_keeps_content() {
        let docs = parse_yaml_documents(Path::new("f"), "--- {a: 1}\n--- {a: 2}\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].value["a"], 2);
        assert_eq!(docs[1].origin.line, Some(2));
    }

    #[test]
    fn walk_is_sorted_and_skips_hidden() {
        let dir = std::env::temp_dir().join(format!("plumb-walk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("b")).unwrap();
        std::fs::create_dir_all(dir.join(".git")).unwrap();
        for f in ["b/z.yaml", "a.yml", "c.json", "d.txt", ".git/x.yaml"] {
            std::fs::write(dir.join(f), "a: 1").unwrap();
        }
        let found: Vec<_> = walk(&dir, &["yaml", "yml", "json"])
            .unwrap()
            .into_iter()
            .map(|p| relative(&dir, &p))
            .collect();
        assert_eq!(
            found,
            vec![
                PathBuf::from("a.yml"),
                PathBuf::from("b/z.yaml"),
                PathBuf::from("c.json")
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
