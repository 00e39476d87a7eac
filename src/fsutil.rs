//! Writing files where something hostile may already be: placing a tree of
//! files into a directory without ever following a symbolic link, and
//! without replacing a file unless asked to.

use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("refusing to write through the symbolic link {}: it may lead anywhere", .0.display())]
    Link(PathBuf),
    #[error("{} exists already (--force replaces files)", .0.display())]
    Exists(PathBuf),
    #[error("{} is not a relative path inside the import", .0.display())]
    Outside(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PlaceError + '_ {
    move |source| PlaceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Makes `dir` (below `out`) and every directory between, refusing any that
/// is a symbolic link.
fn make_dirs(out: &Path, relative: &Path) -> Result<(), PlaceError> {
    let mut current = out.to_path_buf();
    for component in relative.components() {
        current.push(component);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => return Err(PlaceError::Link(current)),
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(PlaceError::Exists(current)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match std::fs::create_dir(&current) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        // Made by someone else meanwhile: check it again.
                        let meta = std::fs::symlink_metadata(&current).map_err(io(&current))?;
                        if !meta.is_dir() || meta.file_type().is_symlink() {
                            return Err(PlaceError::Link(current));
                        }
                    }
                    Err(e) => return Err(io(&current)(e)),
                }
            }
            Err(e) => return Err(io(&current)(e)),
        }
    }
    Ok(())
}

/// Copies each of `files` (paths below `staging`) to the same relative
/// path below `out`. Every directory on the way must be a real directory,
/// and the file is created with `O_CREAT|O_EXCL`, which fails on any
/// existing name, a symbolic link included; with `replace`, an existing
/// regular file is removed first (a link never is). Returns the paths
/// written, below `out`.
pub fn place_tree(staging: &Path, files: &[PathBuf], out: &Path, replace: bool) -> Result<Vec<PathBuf>, PlaceError> {
    std::fs::create_dir_all(out).map_err(io(out))?;
    let mut written = Vec::with_capacity(files.len());
    for file in files {
        let relative = file.strip_prefix(staging).unwrap_or(file);
        if relative.is_absolute() || relative.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(PlaceError::Outside(relative.to_path_buf()));
        }
        let meta = std::fs::symlink_metadata(file).map_err(io(file))?;
        if !meta.is_file() {
            return Err(PlaceError::Link(file.clone()));
        }
        if let Some(parent) = relative.parent() {
            make_dirs(out, parent)?;
        }
        let target = out.join(relative);
        match std::fs::symlink_metadata(&target) {
            Ok(meta) if meta.file_type().is_symlink() => return Err(PlaceError::Link(target)),
            Ok(meta) if meta.is_file() && replace => std::fs::remove_file(&target).map_err(io(&target))?,
            Ok(_) => return Err(PlaceError::Exists(target)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&target)(e)),
        }
        let bytes = std::fs::read(file).map_err(io(file))?;
        let mut created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => PlaceError::Exists(target.clone()),
                _ => io(&target)(e),
            })?;
        created.write_all(&bytes).map_err(io(&target))?;
        written.push(target);
    }
    Ok(written)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn staged(files: &[(&str, &str)]) -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            paths.push(path);
        }
        (dir, paths)
    }

    #[test]
    fn never_writes_through_a_file_or_directory_link() {
        let victim = tempfile::tempdir().unwrap();
        std::fs::write(victim.path().join("passwd"), "keep me").unwrap();
        let (staging, files) = staged(&[("user/a.yaml", "id: user/a\n"), ("b.yaml", "id: b\n")]);

        let out = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(victim.path().join("passwd"), out.path().join("b.yaml")).unwrap();
        for replace in [false, true] {
            let error = place_tree(staging.path(), &files[1..], out.path(), replace).unwrap_err();
            assert!(matches!(error, PlaceError::Link(_)), "{error}");
        }
        assert_eq!(
            std::fs::read_to_string(victim.path().join("passwd")).unwrap(),
            "keep me"
        );

        let out = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(victim.path(), out.path().join("user")).unwrap();
        let error = place_tree(staging.path(), &files[..1], out.path(), true).unwrap_err();
        assert!(matches!(error, PlaceError::Link(_)), "{error}");
        assert!(!victim.path().join("a.yaml").exists());
    }

    #[test]
    fn replaces_regular_files_only_when_asked() {
        let (staging, files) = staged(&[("a.yaml", "new\n")]);
        let out = tempfile::tempdir().unwrap();
        std::fs::write(out.path().join("a.yaml"), "old\n").unwrap();
        assert!(matches!(
            place_tree(staging.path(), &files, out.path(), false).unwrap_err(),
            PlaceError::Exists(_)
        ));
        place_tree(staging.path(), &files, out.path(), true).unwrap();
        assert_eq!(std::fs::read_to_string(out.path().join("a.yaml")).unwrap(), "new\n");
    }
}
