#!/usr/bin/env bash
# What the web console costs (docs/benchmarks.md, "The console"): the overview's load time
# in headless Chromium, and the server's CPU while an overview stays open (its live
# charts streaming) against the same server with no console page open. Needs chromium
# and chromedriver on the PATH and a release build:
#   cargo build --release -p ledger-server
# Usage: benches/scripts/console-cost.sh [SECONDS]   (each CPU window; default 60)
set -euo pipefail
BIN=${BIN:-$(cd "$(dirname "$0")/../.." && pwd)/target/release}
WORK=${WORK:-/tmp/console-bench}
CONSOLE=${CONSOLE:-127.0.0.1:18181}
DRIVER_PORT=${DRIVER_PORT:-9515}
secs=${1:-60}
rm -rf "$WORK" && mkdir -p "$WORK"
"$BIN/ledger-server" --data-dir "$WORK/data" --listen 127.0.0.1:0 \
  --console-listen "$CONSOLE" --log warn >/dev/null 2>&1 &
SRV=$!
chromedriver --port="$DRIVER_PORT" >/dev/null 2>&1 &
DRV=$!
trap 'kill $SRV $DRV 2>/dev/null || true; wait 2>/dev/null || true' EXIT
sleep 1

# CPU seconds (user + system) of the server so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$SRV/stat"; }
wd() { curl -s -X "$1" "http://127.0.0.1:$DRIVER_PORT$2" -H 'content-type: application/json' ${3:+-d "$3"}; }
window() {
  local before after
  before=$(cpu); sleep "$secs"; after=$(cpu)
  echo "$1: $(echo "($after - $before) / $secs * 100" | bc -l | cut -c1-5)% of a core over ${secs} s"
}

window "no console page open"
session=$(wd POST /session '{"capabilities":{"alwaysMatch":{"goog:chromeOptions":{"binary":"/usr/bin/chromium","args":["--headless=new","--no-sandbox","--disable-gpu","--disable-dev-shm-usage"]}}}}' \
  | sed -n 's/.*"sessionId":"\([^"]*\)".*/\1/p')
for i in 1 2 3; do
  wd POST "/session/$session/url" "{\"url\":\"http://$CONSOLE/\"}" >/dev/null
  load=$(wd POST "/session/$session/execute/sync" \
    '{"script":"const n = performance.getEntriesByType(\"navigation\")[0]; return n.loadEventEnd - n.startTime;","args":[]}' \
    | sed -n 's/.*"value":\([0-9.]*\).*/\1/p')
  echo "overview load $i: ${load} ms"
done
window "one overview open"
wd DELETE "/session/$session" >/dev/null
