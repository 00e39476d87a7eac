#![no_main]
//! Fuzz target `peribolos`: see `plumb::fuzzing::peribolos`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| plumb::fuzzing::peribolos(data));
