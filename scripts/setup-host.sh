#!/usr/bin/env bash
# setup-host.sh - one-time host setup so that scstd can mount its control tree and keep state,
# for a daemon that runs as USER (default: nobody, what a root-started scstd drops to).
#
# Usage: setup-host.sh [-u USER] [-m MOUNTPOINT] [-s STATEDIR]     (as root: apply)
#        setup-host.sh -c [-u USER] [-m MOUNTPOINT] [-s STATEDIR]  (anyone: check only)
#   -u USER        owner of the state directories (default nobody)
#   -m MOUNTPOINT  control-tree mountpoint (default /fuse/scst/proc)
#   -s STATEDIR    state directory (default /var/lib/scst)
#   -c             check only: exit 0 when everything is in place, else print what root must
#                  run and exit 1
# What it does (each step only when needed; safe to run again):
#   mkdir -p MOUNTPOINT && chmod 777 MOUNTPOINT       (the daemon may run as any user)
#   user_allow_other in /etc/fuse.conf                 (root's scstadmin reads a user's mount)
#   chmod 0666 /dev/fuse                               (a non-root daemon opens it; Debian's udev
#                                                       usually does this, some VMs ship 0600;
#                                                       not persistent across reboots)
#   install -d -o USER STATEDIR/pr STATEDIR/vdev_mode_pages
set -euo pipefail
USER_NAME=nobody MP=/fuse/scst/proc STATE=/var/lib/scst CHECK=0
while getopts "u:m:s:ch" o; do
  case $o in
    u) USER_NAME=$OPTARG ;; m) MP=$OPTARG ;; s) STATE=$OPTARG ;; c) CHECK=1 ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
id -u "$USER_NAME" >/dev/null 2>&1 || { echo "no such user: $USER_NAME" >&2; exit 2; }
GROUP_NAME=$(id -gn "$USER_NAME")

missing=()
[ -d "$MP" ] && [ "$(stat -c %a "$MP")" = 777 ] || missing+=("mountpoint $MP (mode 777)")
grep -qx '[[:space:]]*user_allow_other[[:space:]]*' /etc/fuse.conf 2>/dev/null || missing+=("user_allow_other in /etc/fuse.conf")
[ -c /dev/fuse ] || { echo "no /dev/fuse on this machine (apt-get install -y fuse3; modprobe fuse)" >&2; exit 1; }
[ "$(stat -c %a /dev/fuse)" = 666 ] || missing+=("/dev/fuse mode 0666")
for d in "$STATE/pr" "$STATE/vdev_mode_pages"; do
  [ -d "$d" ] && [ "$(stat -c %U "$d")" = "$USER_NAME" ] || missing+=("$d owned by $USER_NAME")
done

if [ "$CHECK" = 1 ]; then
  [ ${#missing[@]} = 0 ] && exit 0
  echo "scstd host setup incomplete:" >&2
  for m in "${missing[@]}"; do echo "  - $m" >&2; done
  echo "run once as root:  sudo $(readlink -f "$0") -u $USER_NAME" >&2
  exit 1
fi
[ "$(id -u)" = 0 ] || { echo "setup-host.sh must run as root (or use -c to check)" >&2; exit 1; }
mkdir -p "$MP" && chmod 777 "$MP"
if ! grep -qx '[[:space:]]*user_allow_other[[:space:]]*' /etc/fuse.conf 2>/dev/null; then
  if grep -qx '#[[:space:]]*user_allow_other[[:space:]]*' /etc/fuse.conf 2>/dev/null; then
    sed -i 's/^#[[:space:]]*user_allow_other[[:space:]]*$/user_allow_other/' /etc/fuse.conf
  else
    echo user_allow_other >> /etc/fuse.conf
  fi
fi
chmod 0666 /dev/fuse
mkdir -p "$STATE" && chmod 0755 "$STATE"
install -d -o "$USER_NAME" -g "$GROUP_NAME" -m 0750 "$STATE/pr" "$STATE/vdev_mode_pages"
echo "scstd host setup done (mountpoint $MP, state $STATE for $USER_NAME)"
