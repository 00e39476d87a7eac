//! Every seed and every input a fuzzer once crashed on (`fuzz/seeds/<target>`,
//! `fuzz/regressions/<target>`) through the fuzz target's body, on stable,
//! in every test run: the targets keep building and the fixed crashes stay
//! fixed. The fuzzing itself is `scripts/fuzz.sh` (fuzz/README.md).

use std::path::Path;

#[test]
fn every_seed_and_regression_runs_through_its_target_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut ran = 0;
    for (name, target) in plumb::fuzzing::TARGETS {
        assert!(
            root.join(format!("fuzz_targets/{name}.rs")).is_file(),
            "fuzz target {name} has no fuzz_targets/{name}.rs"
        );
        let mut inputs = 0;
        for kind in ["seeds", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(kind).join(name)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                target(&data);
                inputs += 1;
            }
        }
        assert!(inputs > 0, "fuzz target {name} has no seeds");
        ran += inputs;
    }
    // Odd inputs every target must survive too.
    for (_, target) in plumb::fuzzing::TARGETS {
        for data in [
            &b""[..],
            b"\0",
            b"\xff\xfe",
            b"[[[[[[[[[[",
            b"a: &a [*a, *a]\n",
            b"{\"a\":1,\"a\":2}",
        ] {
            target(data);
        }
    }
    eprintln!(
        "{ran} seed and regression inputs ran through {} targets",
        plumb::fuzzing::TARGETS.len()
    );
}
