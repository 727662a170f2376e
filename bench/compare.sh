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

# The peers and the load generator, from Debian, when missing (as root).
missing=""
for p in docker-registry nginx wrk; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "bench/compare.sh needs:$missing (apt-get install$missing, as root)" >&2
		exit 1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >&2 ||
		{ apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >&2; }
fi

# Row 9's client: containerd 2.x, built once per machine by .ci/build-containerd.
for p in containerd2 ctr2; do
	if [ ! -x "/var/cache/regcache-ci/bin/$p" ]; then
		echo "bench/compare.sh needs containerd 2.x (/var/cache/regcache-ci/bin/$p): run .ci/build-containerd" >&2
		exit 1
	fi
done

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
# Rows 7 and 8: warm hits against nginx serving the same bytes.
REGCACHE_BIN="$tmp/regcache" go test -run '^$' -bench '^BenchmarkHits$' -benchtime 1x -timeout 20m ./bench/
# Row 9: containerd 2.x's parallel range pull of a cold layer, direct and through regcache (as root).
REGCACHE_BIN="$tmp/regcache" go test -run '^$' -bench '^BenchmarkParallelRanges$' -benchtime 1x -timeout 20m ./bench/
# Row 10: the pull policy, on against off (warm hits of a verified image, cold verification).
REGCACHE_BIN="$tmp/regcache" go test -run '^$' -bench '^BenchmarkPolicy$' -benchtime 1x -timeout 10m ./bench/
