#!/usr/bin/env bash
# Runs the loom model checks: the pipeline's ring, shutdown and waiters
# (crates/ledger-pipeline/src/loom_models.rs) and the outcome ring's seqlock
# (crates/ledger-core/src/ledger/outcomes.rs). docs/pipeline.md says what each checks.
#
# Under --cfg loom the crates use loom's atomics, so only the models may run in that
# build (hence --lib and the name filters), and it gets its own target directory so it
# does not invalidate the normal build. Extra arguments go to the test binaries
# (e.g. --nocapture to see each model's execution count). LOOM_MAX_PREEMPTIONS
# overrides the models' preemption bound (2).
set -euo pipefail
cd "$(dirname "$0")/.."

export RUSTFLAGS="${RUSTFLAGS:-} --cfg loom"
export CARGO_TARGET_DIR="${LOOM_TARGET_DIR:-target/loom}"

cargo test -p ledger-pipeline --lib -- loom_models "$@"
cargo test -p ledger-core --lib -- ledger::outcomes::loom_models "$@"
