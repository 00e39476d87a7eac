//! Every policy the project ships under policies/ loads with plumb's own
//! strict loader (unknown keys would be errors), so the defaults users copy
//! are never broken.

#[test]
fn shipped_policies_load() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut loaded = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let policy = plumb::policy::Policy::load(&path, chrono_tz::UTC)
            .unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()));
        assert!(policy.digest.is_some());
        loaded.push(path.file_stem().unwrap().to_string_lossy().into_owned());
    }
    loaded.sort();
    for provider in ["exec", "grafana", "kubernetes", "prometheus"] {
        assert!(
            loaded.iter().any(|p| p == provider),
            "no default policy for {provider}: {loaded:?}"
        );
    }
}
