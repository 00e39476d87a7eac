#![no_main]
//! Fuzz target `saved_plan`: see `plumb::fuzzing::saved_plan`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| plumb::fuzzing::saved_plan(data));
