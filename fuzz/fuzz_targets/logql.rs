#![no_main]
//! Fuzz target `logql`: see `plumb::fuzzing::logql`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| plumb::fuzzing::logql(data));
