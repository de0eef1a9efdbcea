#!/usr/bin/env bash
# The spoolpost demo: builds the binaries, starts the test receiver on
# loopback, drops a few event files into a fresh spool and lets the sender
# deliver them, then shows where every file ended up and why.
# Needs nothing but cargo; leaves nothing behind but target/ and the demo
# folder it prints.
set -euo pipefail
cd "$(dirname "$0")"

echo "== building (release)"
cargo build --release --quiet --bins
bin=target/release

demo=$(mktemp -d -t spoolpost-demo.XXXXXX)
spool=$demo/spool
mkdir -p "$spool/tmp" "$spool/incoming"

echo "== starting the test receiver (answers 422 under /rejects, 200 elsewhere)"
"$bin/test-receiver" --path /rejects=422 >"$demo/receiver.out" 2>"$demo/receiver.err" &
receiver=$!
trap 'kill $receiver 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q listening "$demo/receiver.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$demo/receiver.out")
echo "   $url"

cat >"$demo/spoolpost.toml" <<TOML
spool = "$spool"

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

echo "== producing files (written to tmp/, renamed into incoming/)"
produce() { printf '%s\n' "$2" >"$spool/tmp/.$1"; mv "$spool/tmp/.$1" "$spool/incoming/$1"; }
for i in 1 2 3; do produce "orders-eu-$i.json" "{\"order\":$i,\"region\":\"eu\"}"; done
for i in 1 2; do produce "orders-us-$i.json" "{\"order\":$i,\"region\":\"us\"}"; done
produce "audit-1.json" '{"who":"demo"}'
produce "stray.txt" "no rule routes this"
ls "$spool/incoming"

echo "== sender --once (event lines on stdout)"
"$bin/sender" --config "$demo/spoolpost.toml" --once

echo "== where everything went"
(cd "$spool" && find done error incoming sending -type f | sort)

echo "== why audit-1.json was rejected"
cat "$spool"/error/audit-1.json*.reason.json

kill $receiver; wait $receiver 2>/dev/null || true
trap - EXIT
echo "== receiver: $(cat "$demo/receiver.err")"
echo "== demo folder: $demo"
