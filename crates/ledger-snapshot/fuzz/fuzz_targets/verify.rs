//! Arbitrary bytes as a snapshot file: verification and archive validation must never
//! panic, and whatever verifies must be self-consistent. The logic lives in
//! `ledger_snapshot::fuzzing::check_image` so the normal test suite runs it too
//! (tests/fuzz_smoke.rs).
//!
//! Run: `cd crates/ledger-snapshot/fuzz && cargo +nightly fuzz run verify`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ledger_snapshot::fuzzing::check_image(data);
});
