#!/bin/sh
# Runs the side-by-side benchmark of regcache, Debian's docker-registry
# (Distribution 2.8) in proxy mode and nginx; see docs/benchmarks.md.
#
#   bench/compare.sh                   full sizes (3-5 minutes on 2 cores)
#   BENCH_SCALE=0.05 bench/compare.sh  every blob at 5% of its size, for development
#
# The markdown table is printed, and also written to $BENCH_TABLE if set.
set -eu
cd "$(dirname "$0")/.."

# Timings on a shared machine only compare when nothing else is busy.
waited=0
while [ "$(cut -d' ' -f1 /proc/loadavg | cut -d. -f1)" -ge 3 ] && [ "$waited" -lt 600 ]; do
	echo "load average $(cut -d' ' -f1 /proc/loadavg) >= 3; waiting" >&2
	sleep 30
	waited=$((waited + 30))
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/regcache" ./cmd/regcache
REGCACHE_BIN="$tmp/regcache" go test -run '^$' -bench '^BenchmarkCompare$' -benchtime 1x -timeout 60m ./bench/
