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
    let text = std::fs::read_to_string(path).map_err(|e| ProviderError::io(path, e))?;
    let file = relative(root, path);
    if has_extension(path, &["json"]) {
        parse_json(&file, &text).map(|value| {
            vec![Document {
                value,
                origin: Origin { file, line: Some(1) },
            }]
        })
    } else {
        parse_yaml_documents(&file, &text)
    }
}

/// Parses JSON, reporting line and column of a syntax error.
pub fn parse_json(file: &Path, text: &str) -> Result<Value, ProviderError> {
    serde_json::from_str(text).map_err(|e| ProviderError::Parse {
        origin: Origin {
            file: file.to_path_buf(),
            line: Some(e.line()),
        },
        message: format!(
            "invalid JSON at column {}: {}",
            e.column(),
            without_location(&e.to_string())
        ),
    })
}

/// Parses a YAML stream into its documents. The stream is cut at document
/// markers (`---` or `...` at the start of a line, which YAML reserves for
/// that) so each document's start line is known; each piece is then parsed
/// by serde_yaml_ng and its error lines shifted back to file lines.
pub fn parse_yaml_documents(file: &Path, text: &str) -> Result<Vec<Document>, ProviderError> {
    let mut documents = Vec::new();
    for (first_line, chunk) in split_documents(text) {
        if chunk.lines().all(|l| {
            let t = l.trim();
            t.is_empty() || t.starts_with('#') || t.starts_with('%')
        }) {
            continue;
        }
        let value: Value = serde_yaml_ng::from_str(&chunk).map_err(|e| {
            let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1));
            ProviderError::Parse {
                origin: Origin {
                    file: file.to_path_buf(),
                    line: Some(first_line + line - 1),
                },
                message: format!("invalid YAML at column {column}: {}", without_location(&e.to_string())),
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
