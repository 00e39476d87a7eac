#![no_main]
//! Fuzz target `exec_output`: see `plumb::fuzzing::exec_output`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| plumb::fuzzing::exec_output(data));
