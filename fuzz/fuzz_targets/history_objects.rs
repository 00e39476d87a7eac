#![no_main]
//! Fuzz target `history_objects`: see `plumb::fuzzing::history_objects`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| plumb::fuzzing::history_objects(data));
