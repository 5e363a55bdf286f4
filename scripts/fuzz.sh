#!/bin/bash
# Runs every go test -fuzz target of the module for a fixed time each and
# prints one table: package, target, seconds, executions, corpus growth,
# result. Targets run JOBS at a time, each with WORKERS fuzz workers, so a
# 2-core machine can run the whole set in (targets/JOBS)*TIME.
#
# A crasher stops only its own target; Go leaves it in
# <pkg>/testdata/fuzz/<target>/ where it becomes a seed corpus file that
# every later `go test` replays. With -s the inputs that widened coverage
# (Go keeps them in $GOCACHE/fuzz) are copied there too.
set -u
TIME=10m JOBS=1 WORKERS= OUT=out/fuzz SAVE=0 MATCH=.
usage() { echo "usage: $0 [-t TIME] [-j JOBS] [-w WORKERS] [-o DIR] [-s] [-m REGEXP]" >&2; exit 2; }
while getopts t:j:w:o:sm:h o; do
	case $o in
	t) TIME=$OPTARG ;; j) JOBS=$OPTARG ;; w) WORKERS=$OPTARG ;; o) OUT=$OPTARG ;;
	s) SAVE=1 ;; m) MATCH=$OPTARG ;; *) usage ;;
	esac
done
GO=${GO:-go}
cd "$(dirname "$0")/.." || exit 1
mkdir -p "$OUT"
list=$OUT/targets
: >"$list"
for pkg in $($GO list ./... | grep -v '/test/'); do
	for f in $($GO test -list '^Fuzz' "$pkg" | grep '^Fuzz'); do
		echo "$pkg $f" | grep -E -- "$MATCH" >>"$list"
	done
done
echo "fuzz: $(wc -l <"$list") targets, $TIME each, $JOBS at a time${WORKERS:+, $WORKERS workers each}; logs in $OUT"

run_one() {
	local pkg=$1 f=$2 log rc start
	log=$OUT/$(echo "$pkg" | tr / _).$f.log
	start=$(date +%s)
	$GO test -run '^$' -fuzz "^$f\$" -fuzztime "$TIME" ${WORKERS:+-parallel "$WORKERS"} "$pkg" >"$log" 2>&1
	rc=$?
	echo "rc=$rc secs=$(($(date +%s) - start))" >>"$log"
	echo "done $pkg $f rc=$rc"
}
export -f run_one
export GO OUT TIME WORKERS
xargs -P "$JOBS" -L 1 bash -c 'run_one "$0" "$1"' <"$list"

cache=$($GO env GOCACHE)/fuzz
fail=0
{
	printf '%-40s %-22s %6s %12s %10s %s\n' package target secs execs new result
	while read -r pkg f; do
		log=$OUT/$(echo "$pkg" | tr / _).$f.log
		last=$(grep -E '^fuzz: elapsed: .*execs: ' "$log" | tail -1)
		execs=$(echo "$last" | sed -nE 's/.*execs: ([0-9]+).*/\1/p')
		new=$(echo "$last" | sed -nE 's/.*new interesting: ([0-9]+).*/\1/p')
		secs=$(sed -nE 's/^rc=.* secs=([0-9]+)$/\1/p' "$log")
		if grep -q '^rc=0 ' "$log"; then res=ok; else res=FAIL; fail=1; fi
		printf '%-40s %-22s %6s %12s %10s %s\n' "${pkg#github.com/scstd/scstd/}" "$f" "${secs:-?}" "${execs:-?}" "${new:-?}" "$res"
		if [ "$SAVE" = 1 ] && [ -d "$cache/$pkg/$f" ]; then
			dir=$($GO list -f '{{.Dir}}' "$pkg")/testdata/fuzz/$f
			mkdir -p "$dir"
			cp -n "$cache/$pkg/$f"/* "$dir"/
		fi
	done <"$list"
} | tee "$OUT/summary.txt"
[ $fail = 0 ] || { echo "fuzz: a target failed; its crasher is in <pkg>/testdata/fuzz (see $OUT/*.log)" >&2; exit 1; }
