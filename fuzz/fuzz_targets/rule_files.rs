#![no_main]
//! Fuzz target `rule_files`: see `plumb::fuzzing::rule_files`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| plumb::fuzzing::rule_files(data));
