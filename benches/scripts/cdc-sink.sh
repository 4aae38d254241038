#!/usr/bin/env bash
# The change-stream sink's throughput into NATS JetStream (docs/benchmarks.md, "The
# change-stream sink"). Needs nats-server on the PATH and release builds:
#   cargo build --release -p ledger-server -p ledger-bench
# Usage:
#   benches/scripts/cdc-sink.sh backlog [N]   # N committed transfers first, then the sink
#                                             # starts on an empty stream: acked ids/s
#   benches/scripts/cdc-sink.sh live [0|1]    # grpc-load batch-stream for 10 s against a
#                                             # server without (0) or with (1) the sink
# SINK_ARGS (backlog): more ledger-server flags, e.g. "--cdc-duplicate-window-secs 30".
set -euo pipefail
BIN=${BIN:-$(cd "$(dirname "$0")/../.." && pwd)/target/release}
WORK=${WORK:-/tmp/cdc-bench}
NATS_PORT=${NATS_PORT:-4333}
METRICS=${METRICS:-127.0.0.1:9333}
mode=${1:-backlog}
rm -rf "$WORK" && mkdir -p "$WORK/nats"
nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$WORK/nats" >/dev/null 2>&1 &
NATS=$!
trap 'kill $NATS ${SRV:-} 2>/dev/null || true; wait 2>/dev/null || true' EXIT
sleep 0.5
metric() { curl -s "http://$METRICS/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

case "$mode" in
backlog)
  n=${2:-2000000}
  "$BIN/load" --workload transfer --accounts 10000 --ops "$n" --duration 100 --keep \
    --data-dir "$WORK/data" >/dev/null
  "$BIN/ledger-server" --data-dir "$WORK/data" --listen 127.0.0.1:0 --max-accounts 10001 \
    --metrics-addr "$METRICS" --cdc-nats-url "nats://127.0.0.1:$NATS_PORT" --log warn \
    ${SINK_ARGS:-} >/dev/null 2>&1 &
  SRV=$!
  sleep 0.3
  start=$(date +%s.%N)
  prev=0
  polls=0
  # Polled every 0.1 s (the end is found within that), a line every second.
  while :; do
    sleep 0.1
    polls=$((polls + 1))
    acked=$(metric ledger_cdc_acked_tx_id)
    committed=$(metric ledger_committed_index)
    done_now=0
    if [ "$acked" = "$committed" ] && [ "${acked:-0}" != 0 ]; then done_now=1; fi
    if [ $((polls % 10)) = 0 ] || [ $done_now = 1 ]; then
      echo "t=$(echo "$(date +%s.%N) - $start" | bc) s: acked $acked (+$((acked - prev)))"
      prev=$acked
    fi
    if [ $done_now = 1 ]; then break; fi
  done
  secs=$(echo "$(date +%s.%N) - $start" | bc)
  echo "published $acked in $secs s: $(echo "$acked / $secs" | bc) tx/s"
  ;;
live)
  extra=()
  if [ "${2:-1}" = 1 ]; then extra=(--cdc-nats-url "nats://127.0.0.1:$NATS_PORT"); fi
  "$BIN/ledger-server" --data-dir "$WORK/data" --listen 127.0.0.1:50777 \
    --max-accounts 100001 --metrics-addr "$METRICS" "${extra[@]}" --log warn >/dev/null 2>&1 &
  SRV=$!
  sleep 0.5
  "$BIN/grpc-load" --addr 127.0.0.1:50777 --mode batch-stream --duration 10 | grep committed
  echo "committed index $(metric ledger_committed_index), sink acked $(metric ledger_cdc_acked_tx_id)"
  ;;
*)
  echo "usage: $0 backlog [N] | live [0|1]" >&2
  exit 2
  ;;
esac
ps -o rss=,cputime=,comm= -p "$NATS,$SRV"
