#![no_main]
//! Fuzz target `kubernetes_manifests`: see `plumb::fuzzing::kubernetes_manifests`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| plumb::fuzzing::kubernetes_manifests(data));
