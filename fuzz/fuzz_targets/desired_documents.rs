#![no_main]
//! Fuzz target `desired_documents`: see `plumb::fuzzing::desired_documents`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| plumb::fuzzing::desired_documents(data));
