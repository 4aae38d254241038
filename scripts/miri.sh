#!/usr/bin/env bash
# Runs ledger-pipeline's tests (unit and integration) under Miri: undefined behaviour in
# the ring's unsafe code (aliasing &mut slots, out-of-bounds slices), data races, and
# weak-memory outcomes of the orderings used (Miri lets Relaxed and Acquire loads return
# stale values the memory model allows). Tests scale their item counts down under
# cfg(miri); on 2 cores the tests take about a minute under Miri, after a first build
# of 2-3 minutes.
#
# Needs a nightly toolchain with the miri and rust-src components. Where they are
# missing, the script tries `rustup component add` once (it needs rustup's download
# server, which a machine without it cannot reach) and otherwise says so and exits 0:
# Miri is an extra check, not a gate. MIRI_REQUIRED=1 makes its absence an error.
# Extra arguments go to the test binaries (a name filter, --nocapture, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

skip() {
  echo "miri.sh: SKIPPED: $1" >&2
  if [ "${MIRI_REQUIRED:-0}" = 1 ]; then exit 1; fi
  exit 0
}

command -v rustup >/dev/null 2>&1 || skip "no rustup on this machine"
have_miri() {
  cargo +nightly miri --version >/dev/null 2>&1 &&
    rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'
}
if ! have_miri; then
  echo "miri.sh: nightly with miri + rust-src not installed; trying rustup" >&2
  timeout 300 rustup toolchain install nightly --profile minimal --component miri,rust-src \
    >/dev/null 2>&1 || true
  have_miri || skip "could not install nightly with miri + rust-src (offline?)"
fi

# Its own target directory: Miri's artifacts never mix with the normal build's.
export CARGO_TARGET_DIR="${MIRI_TARGET_DIR:-target/miri}"
cargo +nightly miri setup >/dev/null
cargo +nightly miri test -p ledger-pipeline --lib --tests -- "$@"
