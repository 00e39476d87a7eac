//! Where `plumb import` puts each live document: `<out>/<id>.yaml`, with the
//! id's `/` kept as directories and everything that could escape `out`,
//! hide the file from plumb, or clash on a case-insensitive disk made safe.
//! The id inside the file is what counts, so a changed file name never
//! changes what plumb reads back.

use std::collections::HashSet;
use std::path::PathBuf;

/// Longest path segment written, well under every file system's limit of
/// 255 bytes even after the `.yaml` and a clash suffix are added.
const MAX_SEGMENT: usize = 120;

/// Extensions a directory segment must not end in, so a directory can never
/// have the name of a file another id produces (`a` → `a.yaml`, while
/// `a.yaml/b` → `a.yaml_/b.yaml`).
const FILE_EXTENSIONS: [&str; 3] = [".yaml", ".yml", ".json"];

/// One id segment made safe as a file or directory name: ASCII letters,
/// digits and `-_.@+=,` are kept, everything else becomes `_`; empty, `.`
/// and `..` segments and leading dots (hidden files, which plumb skips when
/// reading) get a `_` in front.
fn safe_segment(segment: &str) -> String {
    let mut out: String = segment
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.@+=,".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with('.') {
        out.insert(0, '_');
    }
    out.truncate(MAX_SEGMENT);
    out
}

/// The relative path for `id`, before clash handling.
pub fn relative_path(id: &str) -> PathBuf {
    let segments: Vec<&str> = id.split('/').collect();
    let mut path = PathBuf::new();
    let last = segments.len() - 1;
    for (index, segment) in segments.iter().enumerate() {
        let mut safe = safe_segment(segment);
        if index == last {
            safe.push_str(".yaml");
        } else {
            let lower = safe.to_ascii_lowercase();
            if FILE_EXTENSIONS.iter().any(|ext| lower.ends_with(ext)) {
                safe.push('_');
            }
        }
        path.push(safe);
    }
    path
}

/// Hands out paths for ids, never the same one twice, comparing without
/// case so an import made on Linux also checks out on macOS.
#[derive(Debug, Default)]
pub struct Layout {
    used: HashSet<String>,
}

impl Layout {
    pub fn path_for(&mut self, id: &str) -> PathBuf {
        let base = relative_path(id);
        if self.claim(&base) {
            return base;
        }
        let stem = base.with_extension("");
        // `~` never survives safe_segment, so a suffixed name cannot be the
        // plain name of another id.
        (2..)
            .map(|n| PathBuf::from(format!("{}~{n}.yaml", stem.display())))
            .find(|candidate| self.claim(candidate))
            .unwrap_or(base)
    }

    fn claim(&mut self, path: &std::path::Path) -> bool {
        self.used.insert(path.to_string_lossy().to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Component, Path};

    #[test]
    fn slashes_become_directories() {
        assert_eq!(relative_path("user/alice"), Path::new("user/alice.yaml"));
        assert_eq!(relative_path("alice"), Path::new("alice.yaml"));
    }

    #[test]
    fn nothing_escapes_or_hides() {
        for id in [
            "../../etc/passwd",
            "/etc/passwd",
            "a/./b",
            "a//b",
            ".hidden",
            "a/..",
            "..",
            "x/",
            "C:\\windows",
            "with space/ünïcode",
        ] {
            let path = relative_path(id);
            assert!(path.is_relative(), "{id} → {}", path.display());
            for component in path.components() {
                let Component::Normal(name) = component else {
                    panic!("{id} → {} has {component:?}", path.display());
                };
                let name = name.to_str().unwrap();
                assert!(!name.starts_with('.'), "{id} → {}", path.display());
                assert!(!name.contains('\\'), "{id} → {}", path.display());
            }
        }
        assert_eq!(relative_path("../x"), Path::new("_../x.yaml"));
        assert_eq!(relative_path("/etc/passwd"), Path::new("_/etc/passwd.yaml"));
    }

    #[test]
    fn directories_never_clash_with_files() {
        assert_eq!(relative_path("a.yaml/b"), Path::new("a.yaml_/b.yaml"));
    }

    #[test]
    fn clashes_get_a_suffix() {
        let mut layout = Layout::default();
        assert_eq!(layout.path_for("user/a b"), Path::new("user/a_b.yaml"));
        assert_eq!(layout.path_for("user/a_b"), Path::new("user/a_b~2.yaml"));
        assert_eq!(layout.path_for("User/A?B"), Path::new("User/A_B~3.yaml"));
    }

    #[test]
    fn long_segments_are_cut() {
        let path = relative_path(&"x".repeat(1000));
        assert!(path.to_str().unwrap().len() <= MAX_SEGMENT + ".yaml".len());
    }
}
