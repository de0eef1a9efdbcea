#!/usr/bin/env bash
# The sender into an S3-compatible store against the same files POSTed to
# an HTTP receiver, in one run: files/s and CPU (user + system) per file of
# `sender --once` over FILES files of SIZE bytes, first to the test receiver
# (fast mode: bodies read and dropped), then to test-s3 (s3s-fs, which
# writes each object and its metadata record to disk). Both on loopback.
#
#   tests/s3-bench.sh [FILES [SIZE]]       (default 5000 files of 1024 bytes)
#
# COMPRESSION=none|gzip|zstd sets both receivers' compression (unset: the
# default). Files above the s3 receiver's multipart_above (64 MiB) go in
# parts, so `COMPRESSION=none tests/s3-bench.sh 4 $((100 << 20))` measures
# multipart uploads; the sender's peak RSS is printed with each run.
#
# Uses target/debug's binaries (built first), or those in SPOOLPOST_BIN_DIR.
# Figures are ratios within one run; docs/performance.md has the method.
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-5000}
size=${2:-1024}
if [ -z "${SPOOLPOST_BIN_DIR:-}" ]; then
    cargo build --quiet --locked -p spoolpost-sender -p spoolpost-tests -p spoolpost-test-s3 --bins
fi
bin=${SPOOLPOST_BIN_DIR:-target/debug}
s3bin=${SPOOLPOST_S3_BIN_DIR:-$bin}
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# Starts a server writing "listening on http://ADDR" and prints the URL.
start() {
    local out=$1; shift
    "$@" >"$out" 2>/dev/null &
    pids+=($!)
    for _ in $(seq 500); do
        grep -q 'listening on' "$out" 2>/dev/null && break
        sleep 0.01
    done
    sed -n 's/^listening on //p' "$out" | head -1
}
rx=$(start "$work/rx.out" "$bin/test-receiver" --fast)
mkdir -p "$work/store"
s3=$(start "$work/s3.out" "$s3bin/test-s3" --root "$work/store" \
    --access-key bench --secret-key bench-secret --bucket bench)

head -c "$size" /dev/urandom >"$work/payload"
# One spool per run, filled the protocol's way (written in tmp/, renamed in).
fill() {
    "$bin/sender" --spool "$1" --create-spool --once --config "$work/http.toml" >/dev/null 2>&1
    for i in $(seq "$files"); do
        cp "$work/payload" "$1/tmp/.fill"
        mv "$1/tmp/.fill" "$1/incoming/f$i.json"
    done
}
compression=""
if [ -n "${COMPRESSION:-}" ]; then compression="compression = \"$COMPRESSION\""; fi
cat >"$work/http.toml" <<TOML
[receivers.http]
url = "$rx/in"
$compression
[[routes]]
glob = "*"
receiver = "http"
TOML
cat >"$work/s3.toml" <<TOML
[receivers.s3]
url = "$s3"
$compression
[receivers.s3.s3]
bucket = "bench"
access_key_id = "bench"
secret_access_key = "bench-secret"
[[routes]]
glob = "*"
receiver = "s3"
TOML

measure() {
    local name=$1 spool=$work/spool-$1
    fill "$spool"
    local t0 t1 usage
    t0=$(date +%s.%N)
    # The sender's own CPU and peak RSS, as its parent sees them.
    usage=$(python3 -c '
import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(r.ru_utime, r.ru_stime, r.ru_maxrss)
' "$bin/sender" --spool "$spool" --config "$work/$name.toml" --once)
    t1=$(date +%s.%N)
    local done_count
    done_count=$(find "$spool/done" -type f | wc -l)
    python3 - "$name" "$files" "$size" "$done_count" "$t0" "$t1" $usage <<'PY'
import sys
name, files, size, done, t0, t1, user, system, rss = sys.argv[1:]
files, size, done = int(files), int(size), int(done)
user, system = float(user), float(system)
secs = float(t1) - float(t0)
per = (user + system) / max(done, 1)
print(f"{name:5} {done:6}/{files} delivered  {done / secs:8.1f} files/s  "
      f"{done * size / secs / 2**20:7.1f} MiB/s  {per * 1e6:9.1f} µs CPU per file "
      f"(user {user:.2f} s, sys {system:.2f} s)  peak RSS {int(rss) / 1024:.0f} MiB")
PY
}
echo "sender --once, $files files of $size bytes, compression ${COMPRESSION:-default}, $(basename "$bin") binaries"
measure http
measure s3
