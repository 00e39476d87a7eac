#![no_main]
//! Fuzz target `promql`: see `plumb::fuzzing::promql`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| plumb::fuzzing::promql(data));
