#!/usr/bin/env bash
# ceph-down.sh - stop the private cluster of ceph-up.sh and remove its directory.
#
# Usage: ceph-down.sh [-d DIR] [-k]
#   -d DIR  the scratch directory given to ceph-up.sh (default $CEPH_DIR or ./.ceph)
#   -k      keep DIR (stop the daemons only; ceph-up.sh -d DIR starts them again)
# Stops only the daemons whose pid files are in DIR/run (TERM, then KILL after 15 s).
# Safe to run again, and on a directory that never held a cluster.
set -euo pipefail
D=${CEPH_DIR:-$PWD/.ceph} KEEP=0
while getopts "d:kh" o; do
  case $o in
    d) D=$OPTARG ;; k) KEEP=1 ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
[ -d "$D" ] || exit 0
D=$(cd "$D" && pwd)
# A leftover pid file must not make us signal an unrelated process that reused the pid:
# only signal a ceph daemon whose command line names this cluster's config.
ours() {
  local pid=$1
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$D/ceph.conf"
}
pids=()
for f in "$D"/run/osd.*.pid "$D"/run/mon.*.pid "$D"/run/mgr.*.pid; do
  [ -s "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null && ours "$pid"; then
    kill -TERM "$pid" && pids+=("$pid")
  fi
done
end=$((SECONDS + 15))
for pid in "${pids[@]}"; do
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $end ]; then kill -KILL "$pid" 2>/dev/null || true; break; fi
    sleep 0.2
  done
done
if [ "$KEEP" = 0 ]; then
  rm -rf "$D"
fi
