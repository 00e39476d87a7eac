#![no_main]
//! Fuzz target `policy`: see `plumb::fuzzing::policy`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| plumb::fuzzing::policy(data));
