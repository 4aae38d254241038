//! Arbitrary bytes read as a WAL segment: the reader must never panic, and whatever it
//! accepts must be consistent. The logic lives in `ledger_wal::fuzzing::check_reader` so
//! the normal test suite runs it too (tests/fuzz_smoke.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ledger_wal::fuzzing::check_reader(data);
});
