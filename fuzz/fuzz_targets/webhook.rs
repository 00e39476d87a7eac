#![no_main]
//! Fuzz target `webhook`: see `plumb::fuzzing::webhook`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| plumb::fuzzing::webhook(data));
