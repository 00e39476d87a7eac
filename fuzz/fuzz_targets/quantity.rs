#![no_main]
//! Fuzz target `quantity`: see `plumb::fuzzing::quantity`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| plumb::fuzzing::quantity(data));
