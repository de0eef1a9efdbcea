#!/usr/bin/env bash
# The spoolpost demo: builds the binaries, starts the test receiver on
# loopback, lets an "application" drop event files into a folder, and runs
# the pipeline: collector (folder -> spool) then sender (spool -> receiver).
# Then it shows where every file ended up and why.
# Needs nothing but cargo; leaves nothing behind but target/ and the demo
# folder it prints.
set -euo pipefail
cd "$(dirname "$0")"

# The first build compiles about 200 crates with whole-program optimisation:
# 11 to 29 minutes on two shared cores (README, "Quick start"), and it
# leaves 0.4 GB in target/. Cargo's progress bar shows it is working;
# later runs take seconds.
echo "== building (release; the first build takes many minutes, later ones seconds)"
cargo build --release --bins
bin=target/release

demo=$(mktemp -d -t spoolpost-demo.XXXXXX)
spool=$demo/spool
app=$demo/app-output          # where the application writes its files
mkdir -p "$app"

echo "== starting the test receiver (answers 422 under /rejects, 200 elsewhere)"
"$bin/test-receiver" --path /rejects=422 >"$demo/receiver.out" 2>"$demo/receiver.err" &
receiver=$!
trap 'kill $receiver 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q listening "$demo/receiver.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$demo/receiver.out")
echo "   $url"

cat >"$demo/spoolpost.toml" <<TOML
spool = "$spool"
# A new spool: without this a missing spool is an error (exit 74), so a
# mistyped path never becomes an empty spool.
create_spool = true

[[collector.sources]]
path = "$app"
ready = "settle"             # complete once untouched for...
settle = "200ms"             # ...this long (default 1s)

[receivers.orders]
url = "$url/orders/{region}"
content_type = "application/json"
headers = { X-Source = "demo" }

[receivers.audit]
url = "$url/rejects"

[[routes]]
regex = '^orders-(?<region>[a-z]+)-'
receiver = "orders"

[[routes]]
glob = "audit-*"
receiver = "audit"
TOML

echo "== the application writes files into $app"
for i in 1 2 3; do echo "{\"order\":$i,\"region\":\"eu\"}" >"$app/orders-eu-$i.json"; done
for i in 1 2; do echo "{\"order\":$i,\"region\":\"us\"}" >"$app/orders-us-$i.json"; done
echo '{"who":"demo"}' >"$app/audit-1.json"
echo "no rule routes this" >"$app/stray.txt"
echo "half-written, ignored" >"$app/upload.part"
ls "$app"
sleep 0.3

echo "== collector --once (moves complete files into the spool; event lines on stdout)"
"$bin/collector" --config "$demo/spoolpost.toml" --once

echo "== sender --once (event lines on stdout)"
"$bin/sender" --config "$demo/spoolpost.toml" --once

echo "== where everything went"
(cd "$spool" && find done error incoming sending -type f | sort)
echo "   left in $app: $(ls "$app")"


echo "== why audit-1.json was rejected"
cat "$spool"/error/audit-1.json*.reason.json

echo "== reporter (the same numbers as JSON with --format json, or Prometheus text)"
"$bin/reporter" --config "$demo/spoolpost.toml"

kill $receiver; wait $receiver 2>/dev/null || true
trap - EXIT
echo "== receiver: $(cat "$demo/receiver.err")"
echo "== demo folder: $demo"
