#!/usr/bin/env bash
# bench.sh - side-by-side loopback benchmark of scstd and tgt (issue 5).
#
# Usage: scripts/bench.sh [-m MODES] [-o OUTDIR] [-k]
#   -m MODES  comma-separated list of (default: single)
#               single  one session, one 1 GiB file LUN on $BENCH_DIR (tmpfs): the metrics of
#                       ../shared/conformance/perf-baseline.sh, run against scstd and tgt in
#                       alternation (A B, B A, A B, ...), BENCH_RUNS times each with -n 1
#               multi   4 concurrent sessions (4 initiator names) on 4 LUNs of one target
#               direct  as single, with O_DIRECT LUNs on $BENCH_DIRECT_DIR (tmpfs has no O_DIRECT)
#               go      the Go micro-benchmarks of the data path (allocations reported)
#               all     single,multi,direct,go
#   -o OUTDIR results (default: ./bench-results-YYYYmmdd-HHMMSS); raw tool output under it
#   -k        keep the backing files and logs of the targets
# Environment:
#   BENCH_SECS        seconds of each time-based run (iscsi-perf, fio)       default 5
#   BENCH_RUNS        runs per target and metric; the table shows medians   default 3
#   BENCH_QUIET       seconds perf-baseline.sh waits for an idle CPU per run default 10
#   BENCH_DIR         directory of the tmpfs LUN files                       default /dev/shm
#   BENCH_DIRECT_DIR  directory of the O_DIRECT LUN files (a disk filesystem) default /var/tmp
#                     (Linux >= 6.6 also accepts O_DIRECT on tmpfs, where it is buffered I/O:
#                     BENCH_DIRECT_DIR=/dev/shm then compares the engines' CPU cost, not the disk)
#   BENCH_MULTI_MB    size of each LUN in multi mode, MiB                    default 512
# Both targets serve the SAME backing files (each target's LUN k is the same file), so the
# media are identical by construction; only one target is exercised at a time.
# Output: one table per mode on stdout: metric, scstd median, tgt median, ratio scstd/tgt.
# Exit: 0 ok; 1 a target failed to start or a read-back did not compare equal; 2 usage;
#       3 a tool or perf-baseline.sh is missing.
set -u
MODES=single OUT="" KEEP=0
while getopts "m:o:kh" o; do
  case $o in m) MODES=$OPTARG ;; o) OUT=$OPTARG ;; k) KEEP=1 ;; *) sed -n '2,/^set -u/p' "$0" >&2; exit 2 ;; esac
done
[ "$MODES" = all ] && MODES=single,multi,direct,go
SECS=${BENCH_SECS:-5} RUNS=${BENCH_RUNS:-3} QUIET=${BENCH_QUIET:-10}
SHM=${BENCH_DIR:-/dev/shm} DDIR=${BENCH_DIRECT_DIR:-/var/tmp} MULTI_MB=${BENCH_MULTI_MB:-512}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PERF=$ROOT/../shared/conformance/perf-baseline.sh
OUT=${OUT:-$ROOT/bench-results-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
IQN_S=iqn.2026-11.org.scstd:bench IQN_T=iqn.2026-11.test:tgt-bench
die() { echo "bench: $*" >&2; exit "${2:-1}"; }

case ",$MODES," in *,single,*|*,direct,*)
  [ -x "$PERF" ] || die "missing $PERF (the shared perf harness); cannot compare with tgt" 3 ;;
esac
need_tools() {
  for t in iscsi-perf iscsi-readcapacity16 qemu-img qemu-nbd fio bc python3; do
    command -v $t >/dev/null || die "missing $t (apt-get install -y libiscsi-bin qemu-utils qemu-block-extra fio bc)" 3
  done
  if ! command -v tgtd >/dev/null; then
    echo "bench: tgt missing, installing it" >&2
    apt-get install -y tgt >&2 || die "apt-get install -y tgt failed" 3
  fi
}

# --- target lifecycle --------------------------------------------------------------------
SPID="" TPID="" TCTL="" SPORT="" TPORT="" WORK=""
cleanup() {
  stop_targets
  [ $KEEP = 1 ] || { [ -n "$WORK" ] && rm -rf "$WORK"; rm -rf "$SHM"/scstd-bench.$$ "$DDIR"/scstd-bench.$$; }
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_targets DIR NLUNS OPTS: files DIR/lunK.img (K=0..NLUNS-1) must exist; OPTS is "" or direct.
start_targets() {
  local dir=$1 n=$2 opts=$3 k devs="" luns="" sopt="" bsof=()
  [ "$opts" = direct ] && { sopt=O_DIRECT; bsof=(--bsoflags direct); }
  local cf=$WORK/run.$RANDOM
  mkdir -p "$cf/state"
  printf 'Target %s\n' $IQN_S > "$cf/iscsi.conf"
  for k in $(seq 0 $((n - 1))); do
    devs+="DEVICE bench$k,$dir/lun$k.img,$sopt,512,bench$k"$'\n'
    luns+="DEVICE bench$k,$k"$'\n'
  done
  printf '[HANDLER vdisk]\n%s\n[GROUP Default]\n\n[ASSIGNMENT Default]\n%s' "$devs" "$luns" > "$cf/scst.conf"
  "$WORK/scstd" -f -a 127.0.0.1 -p 0 -d info -c "$cf/iscsi.conf" --scst-config "$cf/scst.conf" \
    --state-dir "$cf/state" --initiators-allow "$cf/allow" --initiators-deny "$cf/deny" --no-mount -u 0 -g 0 \
    > "$OUT/scstd.log" 2>&1 &
  SPID=$!
  for k in $(seq 100); do
    SPORT=$(sed -n 's/.*msg=listening addr="\{0,1\}127\.0\.0\.1:\([0-9]*\).*/\1/p' "$OUT/scstd.log" | head -1)
    [ -n "$SPORT" ] && break
    kill -0 $SPID 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$SPORT" ] || { tail "$OUT/scstd.log" >&2; die "scstd did not start"; }
  grep -q 'O_DIRECT.*buffered\|AIO unavailable' "$OUT/scstd.log" && echo "bench: note: $(grep -m1 'O_DIRECT\|AIO' "$OUT/scstd.log")" >&2

  TPORT=$(free_port) TCTL=$((20000 + RANDOM % 12000))   # tgtd accepts -C up to 32767
  tgtd -f --iscsi portal=127.0.0.1:$TPORT -C $TCTL > "$OUT/tgtd.log" 2>&1 &
  TPID=$!
  local t="tgtadm -C $TCTL --lld iscsi"
  for k in $(seq 50); do $t --op show --mode target >/dev/null 2>&1 && break; sleep 0.1; done
  $t --op new --mode target --tid 1 -T $IQN_T >> "$OUT/tgtd.log" 2>&1 || die "tgtadm: cannot create the target"
  for k in $(seq 0 $((n - 1))); do   # tgt's LUN 0 is its controller: disks are LUN 1..n
    $t --op new --mode logicalunit --tid 1 --lun $((k + 1)) -b "$dir/lun$k.img" "${bsof[@]}" >> "$OUT/tgtd.log" 2>&1 ||
      die "tgtadm: cannot add LUN $((k + 1))"
  done
  $t --op bind --mode target --tid 1 -I ALL >> "$OUT/tgtd.log" 2>&1 || die "tgtadm: bind failed"
  for url in "$(url scstd 0)" "$(url tgt 0)"; do
    iscsi-readcapacity16 "$url" >/dev/null 2>&1 || die "no login on $url"
  done
}

stop_targets() {
  if [ -n "$TPID" ]; then   # tgtd ignores SIGTERM while targets exist
    tgtadm -C $TCTL --lld iscsi --op delete --mode target --tid 1 --force >/dev/null 2>&1
    tgtadm -C $TCTL --op delete --mode system >/dev/null 2>&1
    waitpid $TPID || { kill -9 $TPID 2>/dev/null; wait $TPID 2>/dev/null; }
    TPID=""
  fi
  if [ -n "$SPID" ]; then
    kill -TERM $SPID 2>/dev/null
    waitpid $SPID || { kill -9 $SPID 2>/dev/null; wait $SPID 2>/dev/null; }
    SPID=""
  fi
}
waitpid() { local i; for i in $(seq 100); do kill -0 $1 2>/dev/null || { wait $1 2>/dev/null; return 0; }; sleep 0.1; done; return 1; }

# url WHO K: LUN K as the initiators address it.
url() {
  if [ "$1" = scstd ]; then echo "iscsi://127.0.0.1:$SPORT/$IQN_S/$2"; else echo "iscsi://127.0.0.1:$TPORT/$IQN_T/$(($2 + 1))"; fi
}
# opts WHO K INIT: the same LUN as qemu --image-opts, with an initiator name.
qopts() {
  local port=$TPORT iqn=$IQN_T lun=$(($2 + 1))
  [ "$1" = scstd ] && port=$SPORT iqn=$IQN_S lun=$2
  echo "driver=raw,file.driver=iscsi,file.transport=tcp,file.portal=127.0.0.1:$port,file.target=$iqn,file.lun=$lun,file.initiator-name=$3"
}

# mklun PATH MiB: a fully written file, so that neither target pays for first-touch
# allocation (tmpfs pages, unwritten ext4 extents) that the other then gets for free.
mklun() {
  rm -f "$1"
  dd if=/dev/zero of="$1" bs=1M count=$2 conv=fsync status=none || die "cannot write $1"
}
# order R: the targets of run R, alternating which goes first (A B, B A, A B, ...) so that a
# drifting machine load does not favour one of them.
order() { if [ $(($1 % 2)) = 1 ]; then echo scstd tgt; else echo tgt scstd; fi; }

# --- result table ------------------------------------------------------------------------
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {if (NR) print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
# table FILE: FILE has lines "metric unit who value"; prints the comparison table.
table() {
  local f=$1 title=$2 m u s t
  echo
  echo "== $title (medians of $RUNS runs each, alternating; $(nproc) vCPU shared by initiator and target)"
  printf '%-28s %-6s %12s %12s %8s\n' metric unit scstd tgt scstd/tgt
  for m in $(awk '{print $1}' "$f" | awk '!seen[$0]++'); do
    u=$(awk -v m=$m '$1==m {print $2; exit}' "$f")
    s=$(awk -v m=$m '$1==m && $3=="scstd" {print $4}' "$f" | median)
    t=$(awk -v m=$m '$1==m && $3=="tgt" {print $4}' "$f" | median)
    printf '%-28s %-6s %12s %12s %8s\n' $m $u "${s:--}" "${t:--}" \
      "$( [ -n "$s" ] && [ -n "$t" ] && echo "scale=2; $s / $t" | bc 2>/dev/null || echo -)"
  done
}

# --- modes -------------------------------------------------------------------------------
VERIFY_FAILED=0
# perf_mode NAME DIR OPTS: perf-baseline.sh against each target in alternation.
perf_mode() {
  local name=$1 dir=$2 opts=$3 r who
  mkdir -p "$dir/scstd-bench.$$" || die "cannot create $dir/scstd-bench.$$"
  dir=$dir/scstd-bench.$$
  mklun "$dir/lun0.img" 1024
  start_targets "$dir" 1 "$opts"
  local res=$OUT/$name.results
  : > "$res"
  for r in $(seq $RUNS); do
    for who in $(order $r); do
      local o=$OUT/$name/$who.$r
      mkdir -p "$OUT/$name"
      echo "bench: $name run $r/$RUNS: $who" >&2
      QUIET_WAIT=$QUIET "$PERF" -o "$o" -n 1 -s "$SECS" "$(url $who 0)" > "$o.out" 2>&1
      [ -f "$o/perf.tsv" ] || { cat "$o.out" >&2; die "perf-baseline.sh produced no results for $who"; }
      awk -F'\t' -v w=$who 'NR>1 && $NF != "" {print $1, $2, w, $NF}' "$o/perf.tsv" >> "$res"
      if ! awk -F'\t' '$1=="convert_from_lun_1g" && $NF != "" {ok=1} END {exit !ok}' "$o/perf.tsv"; then
        echo "bench: $name $who run $r: convert_from_lun_1g failed or read back different data:" >&2
        cat "$o"/logs/convert_from_lun_1g.* >&2
        VERIFY_FAILED=1
      fi
    done
    [ "$opts" = direct ] && device_run "$dir/lun0.img" "$OUT/$name.device"
  done
  stop_targets
  rm -rf "$dir"
  table "$res" "$name: $(case $opts in direct) echo "O_DIRECT LUN on $(df --output=fstype "$2" | tail -1) $2" ;; *) echo "file LUN on $2" ;; esac)" | tee -a "$OUT/table.txt"
  [ "$opts" = direct ] && device_table "$OUT/$name.device" | tee -a "$OUT/table.txt"
  return 0
}

# device_run FILE OUT: the disk's own speed, without a target: fio O_DIRECT reads of the LUN's
# backing file with the patterns of the read metrics, once per run (after both targets).
device_run() {
  local f=$1 out=$2 v
  v=$(fio --name=dev --filename="$f" --readonly --direct=1 --ioengine=libaio --rw=read --bs=1M --iodepth=8 \
        --runtime=$SECS --time_based --output-format=terse --terse-version=3 2>/dev/null | awk -F';' '$1=="3" {printf "%.0f", $7/1024}')
  [ -n "$v" ] && echo "seqread_1m_qd8_fio MiB/s $v" >> "$out"
  v=$(fio --name=dev --filename="$f" --readonly --direct=1 --ioengine=libaio --rw=randread --bs=4k --iodepth=32 \
        --runtime=$SECS --time_based --output-format=terse --terse-version=3 2>/dev/null | awk -F';' '$1=="3" {print $8}')
  [ -n "$v" ] && echo "randread_4k_qd32_fio IOPS $v" >> "$out"
}
device_table() {
  [ -s "$1" ] || return 0
  echo "   the disk itself, fio O_DIRECT on the backing file, no target (median of $RUNS runs, one after each pair):"
  local m
  for m in $(awk '{print $1}' "$1" | awk '!seen[$0]++'); do
    printf '   %-25s %-6s %12s\n' $m "$(awk -v m=$m '$1==m {print $2; exit}' "$1")" "$(awk -v m=$m '$1==m {print $3}' "$1" | median)"
  done
}

# multi_run WHO METRIC RUN: one metric with 4 concurrent initiators; prints the total.
multi_run() {
  local who=$1 m=$2 r=$3 k pids=() t0 t1 init lg=$OUT/multi/logs
  mkdir -p "$lg"
  t0=$(date +%s.%N)
  for k in 0 1 2 3; do
    init=iqn.2026-11.test:bench-init$k
    case $m in
      randread_4k_qd32_iscsiperf) timeout -k 5 $((SECS + 30)) iscsi-perf -i $init -r -b 8 -m 32 -t $SECS "$(url $who $k)" ;;
      seqread_1m_qd8_iscsiperf)   timeout -k 5 $((SECS + 30)) iscsi-perf -i $init -b 2048 -m 8 -t $SECS "$(url $who $k)" ;;
      seqwrite_1m_qd8_qemubench)  timeout -k 5 120 qemu-img bench -t none -w -d 8 -s 1M -c $MULTI_MB --image-opts "$(qopts $who $k $init)" ;;
      seqwrite_4k_qd32_qemubench) timeout -k 5 120 qemu-img bench -t none -w -d 32 -s 4k -c 50000 --image-opts "$(qopts $who $k $init)" ;;
      convert_to_lun)   timeout -k 5 120 qemu-img convert -n -f raw -t none --target-image-opts "$WORK/src.img" "$(qopts $who $k $init)" ;;
      convert_from_lun) rm -f "$WORK/back$k.img"; timeout -k 5 120 qemu-img convert -O raw --image-opts "$(qopts $who $k $init)" "$WORK/back$k.img" ;;
    esac > "$lg/$m.$who.$r.$k" 2>&1 &
    pids+=($!)
  done
  local failed=0
  for k in "${pids[@]}"; do wait $k || failed=1; done
  t1=$(date +%s.%N)
  case $m in
    *iscsiperf) [ $failed = 0 ] && for k in 0 1 2 3; do tr '\r' '\n' < "$lg/$m.$who.$r.$k" | awk -v m=$m '/^iops average/ {v = (m ~ /seqread/) ? $4 : $3; gsub(/\(/, "", v)} END {print v}'; done | awk '{s+=$1; n++} END {if (n == 4) print s}' ;;
    seqwrite_1m*)   [ $failed = 0 ] && echo "scale=1; 4 * $MULTI_MB / ($t1 - $t0)" | bc ;;
    seqwrite_4k*)   [ $failed = 0 ] && echo "4 * 50000 / ($t1 - $t0)" | bc ;;
    convert_to_lun) [ $failed = 0 ] && echo "scale=1; 4 * $MULTI_MB / ($t1 - $t0)" | bc ;;
    convert_from_lun)
      for k in 0 1 2 3; do
        if ! cmp "$WORK/src.img" "$WORK/back$k.img" >> "$lg/$m.$who.$r.$k" 2>&1; then
          echo "bench: multi $who LUN $k run $r: read back different data" >&2
          VERIFY_FAILED=1 failed=1
        fi
        rm -f "$WORK/back$k.img"
      done
      [ $failed = 0 ] && echo "scale=1; 4 * $MULTI_MB / ($t1 - $t0)" | bc ;;
  esac
}

multi_mode() {
  local dir=$SHM/scstd-bench.$$ k r who m v res=$OUT/multi.results
  mkdir -p "$dir" || die "cannot create $dir"
  for k in 0 1 2 3; do mklun "$dir/lun$k.img" $MULTI_MB; done
  head -c $((MULTI_MB * 1048576)) /dev/urandom > "$WORK/src.img"
  start_targets "$dir" 4 ""
  : > "$res"
  for r in $(seq $RUNS); do
    for who in $(order $r); do
      echo "bench: multi run $r/$RUNS: $who" >&2
      for m in convert_to_lun convert_from_lun randread_4k_qd32_iscsiperf seqread_1m_qd8_iscsiperf \
               seqwrite_1m_qd8_qemubench seqwrite_4k_qd32_qemubench; do
        v=$(multi_run $who $m $r)
        case $m in *4k*) u=IOPS ;; *) u=MiB/s ;; esac
        [ -n "$v" ] && echo "$m $u $who $v" >> "$res"
      done
    done
  done
  stop_targets
  rm -rf "$dir" "$WORK/src.img"
  table "$res" "multi: 4 sessions (4 initiator names) on 4 LUNs of $MULTI_MB MiB, file LUNs on $SHM" | tee -a "$OUT/table.txt"
}

go_mode() {
  echo
  echo "== go: data-path micro-benchmarks" | tee -a "$OUT/table.txt"
  (cd "$ROOT" && go test -run '^$' -bench . -benchmem -benchtime=${BENCH_GOTIME:-300ms} \
     ./iscsi/pdu/ ./iscsi/ ./target/ ./vdisk/ ./vdisk/backend/) 2>&1 | grep -E '^(Benchmark|ok|FAIL|---)' | tee -a "$OUT/table.txt"
  [ "${PIPESTATUS[0]}" = 0 ] || die "go benchmarks failed"
}

# --- main --------------------------------------------------------------------------------
case ",$MODES," in *,single,*|*,direct,*|*,multi,*)
  need_tools
  WORK=$(mktemp -d "$SHM/scstd-bench-work.XXXXXX") || die "cannot create a work directory in $SHM"
  (cd "$ROOT" && go build -o "$WORK/scstd" ./cmd/scstd) || die "go build ./cmd/scstd failed"
  ;;
esac
echo "bench: results in $OUT; BENCH_SECS=$SECS BENCH_RUNS=$RUNS; $(nproc) vCPU; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for mode in ${MODES//,/ }; do
  case $mode in
    single) perf_mode single "$SHM" "" ;;
    direct) perf_mode direct "$DDIR" direct ;;
    multi)  multi_mode ;;
    go)     go_mode ;;
    *) die "unknown mode $mode" 2 ;;
  esac
done
if [ $VERIFY_FAILED = 1 ]; then
  echo "bench: DATA VERIFICATION FAILED (see above)" >&2
  exit 1
fi
exit 0
