#!/usr/bin/env bash
# ceph-up.sh - a private single-node Ceph cluster (one mon, one bluestore OSD on a sparse file)
# on 127.0.0.1, for the RBD backend's tests and for trying RBD LUNs by hand.
#
# Usage: ceph-up.sh [-d DIR] [-s SIZE] [-i IMAGE_SIZE]
#   -d DIR         scratch directory holding everything (default $CEPH_DIR or ./.ceph)
#   -s SIZE        size of the OSD's sparse block file (default 10G)
#   -i IMAGE_SIZE  size of the image rbd/lun0 created at first start (default 1G; feature
#                  layering only, see below)
# Prints "CEPH_CONF=DIR/ceph.conf" on success. Idempotent: a running cluster in DIR is left as
# it is (lun0 is created if missing). Nothing is written outside DIR: the config, keyring,
# logs, admin sockets, pid files and the OSD's data all live there; no system-wide
# /etc/ceph/ceph.conf is read (every tool gets -c DIR/ceph.conf). Only 127.0.0.1 is used: the
# monitor on a free port in 40300-40399, the daemons on ports in 40400-40599.
# Installs the Debian packages when a tool is missing (root only).
# Stop with ceph-down.sh -d DIR.
set -euo pipefail
D=${CEPH_DIR:-$PWD/.ceph} OSD_SIZE=10G IMG_SIZE=1G
while getopts "d:s:i:h" o; do
  case $o in
    d) D=$OPTARG ;; s) OSD_SIZE=$OPTARG ;; i) IMG_SIZE=$OPTARG ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
mkdir -p "$D"
D=$(cd "$D" && pwd)
C=$D/ceph.conf

pkgs=(ceph-mon ceph-osd ceph-common librbd-dev librados-dev)
if ! command -v ceph-mon >/dev/null || ! command -v ceph-osd >/dev/null || ! command -v rbd >/dev/null ||
   [ ! -e /usr/include/rbd/librbd.h ] || [ ! -e /usr/include/rados/librados.h ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "ceph-up: missing packages; as root run: apt-get install --no-install-recommends ${pkgs[*]}" >&2
    exit 1
  fi
  echo "ceph-up: installing ${pkgs[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}" >&2 ||
    { DEBIAN_FRONTEND=noninteractive apt-get update >&2 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}" >&2; }
fi

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# port_free PORT: nothing listens on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND until it succeeds.
wait_for() {
  local secs=$1 what=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then echo "ceph-up: timed out waiting for $what (logs in $D)" >&2; exit 1; fi
    sleep 0.5
  done
}

if [ ! -f "$D/.created" ]; then
  rm -rf "$D"/{mon.a,osd.0,run,log,crash,keyring,monmap,ceph.conf}
  mkdir -p "$D"/{mon.a,osd.0,run,log,crash}
  port=""
  for p in $(seq 40300 40399); do
    if port_free "$p"; then port=$p; break; fi
  done
  [ -n "$port" ] || { echo "ceph-up: no free monitor port in 40300-40399" >&2; exit 1; }
  fsid=$(cat /proc/sys/kernel/random/uuid)
  cat >"$C" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$port
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
ms bind port min = 40400
ms bind port max = 40599
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
keyring = $D/keyring
run dir = $D/run
admin socket = $D/run/\$cluster-\$name.\$pid.asok
pid file = $D/run/\$name.pid
log file = $D/log/\$name.log
mon cluster log file = $D/log/cluster.log
crash dir = $D/crash
log to syslog = false
err to syslog = false
mon cluster log to syslog = false
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
rbd cache = false

[mon]
mon data = $D/mon.\$id

[osd]
osd data = $D/osd.\$id
osd objectstore = bluestore
bluestore block path = $D/osd.\$id/block.file
bluestore block create = true
bluestore block size = $OSD_SIZE
bluestore fsck on mount = false
osd memory target = 1073741824

[client]
admin socket =
log file = $D/log/client.log
EOF
  ceph-authtool --create-keyring "$D/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool "$D/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
    --cap mds 'allow *' --cap mgr 'allow *' >/dev/null
  ceph-authtool "$D/keyring" --gen-key -n osd.0 --cap mon 'allow profile osd' --cap osd 'allow *' \
    --cap mgr 'allow profile osd' >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" "$D/monmap" >/dev/null
  ceph-mon -c "$C" -i a --mkfs --monmap "$D/monmap" --keyring "$D/keyring"
  touch "$D/.created"
fi

if ! alive "$D/run/mon.a.pid"; then
  ceph-mon -c "$C" -i a
fi
wait_for 30 "the monitor" timeout 10 ceph -c "$C" mon stat

if [ ! -f "$D/osd.0/.mkfs" ]; then
  uuid=$(cat /proc/sys/kernel/random/uuid)
  ceph -c "$C" osd new "$uuid" 0 >/dev/null
  ceph-osd -c "$C" -i 0 --mkfs --osd-uuid "$uuid" 2>"$D/log/osd-mkfs.err" ||
    { cat "$D/log/osd-mkfs.err" >&2; exit 1; }
  touch "$D/osd.0/.mkfs"
fi
if ! alive "$D/run/osd.0.pid"; then
  ceph-osd -c "$C" -i 0
fi
osd_up() { ceph -c "$C" osd stat -f json | grep -q '"num_up_osds":1'; }
wait_for 60 "the OSD" osd_up

if ! ceph -c "$C" osd pool ls | grep -qx rbd; then
  ceph -c "$C" osd pool create rbd 32 32 >/dev/null
  rbd -c "$C" pool init rbd
fi
if ! rbd -c "$C" info rbd/lun0 >/dev/null 2>&1; then
  # layering only: without exclusive-lock, several scstd nodes write the image at once without
  # passing a lock back and forth, and a dead node's lock never has to be broken.
  rbd -c "$C" create rbd/lun0 --size "$IMG_SIZE" --image-feature layering
fi
echo "CEPH_CONF=$C"
