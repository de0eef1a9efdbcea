#!/bin/sh
# Times `sender --once` delivering N files to a receiver with
# urls = [a, b], where a takes every request and never answers
# (test-receiver --faults 0,1) and b answers at once. Prints the files
# delivered, the seconds taken and how many files failed over from a.
# Build first: cargo build -p spoolpost-sender -p spoolpost-tests
#   N=1000 TIMEOUT=10s sh tests/hanging-endpoint.sh
#   FAULTS=0,0 sh tests/hanging-endpoint.sh   # no endpoint hangs
set -e
BIN=${BIN:-$(dirname "$0")/../target/debug}
N=${N:-1000}
TIMEOUT=${TIMEOUT:-10s}
FAULTS=${FAULTS:-0,1}
D=$(mktemp -d)
"$BIN/test-receiver" --faults "$FAULTS" >"$D/a.out" 2>/dev/null & A=$!
"$BIN/test-receiver" >"$D/b.out" 2>/dev/null & B=$!
trap 'kill $A $B 2>/dev/null; rm -rf "$D"' EXIT
until grep -q listening "$D/a.out" && grep -q listening "$D/b.out"; do sleep 0.05; done
UA=$(sed 's/listening on //' "$D/a.out")
UB=$(sed 's/listening on //' "$D/b.out")
cat >"$D/c.toml" <<EOT
spool = "$D/spool"
create_spool = true
[receivers.r]
urls = ["$UA/in", "$UB/in"]
timeout = "$TIMEOUT"
[[routes]]
glob = "*"
receiver = "r"
EOT
"$BIN/sender" --config "$D/c.toml" --check >/dev/null 2>&1 || true
mkdir -p "$D/spool/incoming"
i=1
while [ "$i" -le "$N" ]; do echo "event $i" >"$D/spool/incoming/f$i"; i=$((i + 1)); done
s=$(date +%s.%N)
"$BIN/sender" --config "$D/c.toml" --once >"$D/events.jsonl" 2>"$D/sender.err" || tail -5 "$D/sender.err"
e=$(date +%s.%N)
echo "delivered=$(ls "$D/spool/done" | wc -l) seconds=$(echo "$e - $s" | bc) failed_over=$(grep -c failed_over "$D/events.jsonl" || true)"
