#![no_main]
//! Fuzz target `go_templates`: see `plumb::fuzzing::go_templates`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| plumb::fuzzing::go_templates(data));
