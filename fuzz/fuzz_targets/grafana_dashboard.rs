#![no_main]
//! Fuzz target `grafana_dashboard`: see `plumb::fuzzing::grafana_dashboard`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| plumb::fuzzing::grafana_dashboard(data));
