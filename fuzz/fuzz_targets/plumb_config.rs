#![no_main]
//! Fuzz target `plumb_config`: see `plumb::fuzzing::plumb_config`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| plumb::fuzzing::plumb_config(data));
