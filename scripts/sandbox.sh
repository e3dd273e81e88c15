#!/usr/bin/env bash
# A private libvirtd inside its own network namespace, for tests and demos that create networks and VMs.
#
# Usage: scripts/sandbox.sh [--name NAME] start|stop|status|exec -- CMD...|env [KEY]
#   start   create the netns NAME (lo up) and start a private libvirtd in it; prints its URI. Idempotent;
#           leftovers of a crashed run under the same name are cleaned up first.
#   stop    destroy and undefine every domain, network and pool of that libvirtd, kill every process in the netns
#           (libvirtd, dnsmasq, qemu, anything run with `exec`), delete the netns and the sandbox's directories.
#           Safe to run when nothing is there.
#   status  what exists; exit 0 running, 3 not running (nothing left), 1 partial (leftovers: run `stop`)
#   exec -- CMD...  run CMD in the sandbox (its netns and libvirtd's mount view), with LIBVIRT_DEFAULT_URI set
#   env [KEY]       print KEY=value lines (shell-quoted) for the sandbox, or the bare value of one KEY
# NAME defaults to $HSW_SANDBOX or "hsw-sandbox" (letters, digits, '-' and '_'; at most 32).
#
# Layout (root only; the host's /run/libvirt, /var/lib/libvirt and /etc/libvirt are never used):
#   /run/hsw-sandbox/NAME/libvirt/libvirt-sock     the socket; URI qemu+unix:///system?socket=THAT
#   /run/hsw-sandbox/NAME/libvirtd.pid
#   /var/lib/hsw-sandbox/NAME/{etc,lib,cache,log}   what libvirtd sees as /etc/libvirt, /var/lib/libvirt, ...
#   /var/lib/hsw-sandbox/NAME/log/libvirtd.log      libvirtd's log; log/qemu/DOMAIN.log are the guests' logs
#   /var/lib/hsw-sandbox/NAME/pool                  a directory for disks, seeds and kernels (same path everywhere)
# libvirtd runs in a private mount namespace (inside the netns) where /run is a fresh tmpfs and those directories
# are bind-mounted over /run/libvirt, /etc/libvirt, /var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt.
# QEMU's probed capabilities are kept in /var/cache/hsw/libvirt-qemu-capabilities between sandboxes (a cache).
# Its qemu.conf runs guests as the unprivileged QEMU_USER:QEMU_GROUP (Debian's libvirt-qemu:kvm; override with
# HSW_SANDBOX_QEMU_USER / HSW_SANDBOX_QEMU_GROUP) with libvirt's dynamic ownership (disks that are 0600 root are
# chowned to that user while the guest runs and given back after, remember_owner), under AppArmor or SELinux when the
# host's kernel has one enabled (security_driver "none" only when it has neither: `env SECURITY_DRIVER` says which);
# no cgroups, no per-domain mount namespace and file-based console logs (no virtlogd). `exec` enters the same mount view, so paths under /var/lib/libvirt mean
# the same to a client run through `exec` as to libvirtd; from outside, use paths under the pool directory.
set -euo pipefail

RUN_ROOT=/run/hsw-sandbox
STATE_ROOT=/var/lib/hsw-sandbox
CAPS_CACHE="${HSW_SANDBOX_CAPS_CACHE:-/var/cache/hsw/libvirt-qemu-capabilities}"

die() { echo "sandbox: $*" >&2; exit 1; }
say() { printf 'sandbox: %s\n' "$*" >&2; }
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

name="${HSW_SANDBOX:-hsw-sandbox}"
while [ $# -gt 0 ]; do
  case "$1" in
    --name) [ $# -ge 2 ] || die "--name needs a value"; name=$2; shift 2 ;;
    --name=*) name=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { usage >&2; exit 2; }
cmd=$1; shift
[[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$ ]] || die "invalid sandbox name '$name'"

run_dir="$RUN_ROOT/$name"
state_dir="$STATE_ROOT/$name"
sock="$run_dir/libvirt/libvirt-sock"
uri="qemu+unix:///system?socket=$sock"
pidfile="$run_dir/libvirtd.pid"
pool_dir="$state_dir/pool"
logfile="$state_dir/log/libvirtd.log"
qemu_user="${HSW_SANDBOX_QEMU_USER:-libvirt-qemu}"
qemu_group="${HSW_SANDBOX_QEMU_GROUP:-kvm}"

# The host's mandatory access control, as libvirt's security_driver names it: "apparmor" when the kernel has
# AppArmor enabled and libvirt's helper and apparmor_parser are installed, "selinux" when SELinux is enabled,
# otherwise "none" (the guests then run unprivileged but unconfined).
host_security_driver() {
  local aa=/sys/module/apparmor/parameters/enabled
  if [ -r "$aa" ] && [ "$(cat "$aa")" = Y ] && command -v apparmor_parser >/dev/null 2>&1 \
     && [ -x /usr/lib/libvirt/virt-aa-helper ]; then
    echo apparmor
  elif [ -r /sys/fs/selinux/enforce ]; then
    echo selinux
  else
    echo none
  fi
}
security_driver=$(host_security_driver)

need_root() { [ "$(id -u)" -eq 0 ] || die "run as root (network namespaces and libvirtd need it)"; }
netns_exists() { [ -e "/run/netns/$name" ]; }

# The pid of this sandbox's libvirtd, if it is alive and really in the netns.
libvirtd_pid() {
  local pid
  [ -r "$pidfile" ] || return 1
  pid=$(tr -dc '0-9' < "$pidfile")
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = libvirtd ] || return 1
  # (A killed libvirtd may linger as a zombie, whose namespaces cannot be read.)
  local ns_ino
  ns_ino=$(stat -L -c %i "/proc/$pid/ns/net" 2>/dev/null) || return 1
  netns_exists && [ "$ns_ino" = "$(stat -L -c %i "/run/netns/$name")" ] || return 1
  echo "$pid"
}

virsh_s() { timeout 30 virsh -q -c "$uri" "$@"; }
alive() { libvirtd_pid >/dev/null && [ -S "$sock" ] && virsh_s version >/dev/null 2>&1; }

print_env() {
  printf 'HSW_SANDBOX_NAME=%q\nHSW_SANDBOX_NETNS=%q\nHSW_SANDBOX_URI=%q\nLIBVIRT_DEFAULT_URI=%q\n' \
    "$name" "$name" "$uri" "$uri"
  printf 'HSW_SANDBOX_SOCKET=%q\nHSW_SANDBOX_POOL_DIR=%q\nHSW_SANDBOX_RUN_DIR=%q\nHSW_SANDBOX_STATE_DIR=%q\n' \
    "$sock" "$pool_dir" "$run_dir" "$state_dir"
  printf 'HSW_SANDBOX_LOG=%q\nHSW_SANDBOX_QEMU_USER=%q\nHSW_SANDBOX_SECURITY_DRIVER=%q\n' \
    "$logfile" "$qemu_user" "$security_driver"
}

write_configs() {
  mkdir -p "$run_dir/libvirt" "$state_dir"/{etc,lib,cache,log,stash} "$state_dir/etc/qemu/networks" "$pool_dir"
  # QEMU (an unprivileged user) only passes through these; what it opens, libvirt chowns to it.
  chmod 0711 "$run_dir" "$state_dir" "$pool_dir" "$state_dir/lib"
  cat > "$state_dir/etc/libvirtd.conf" <<'EOF'
# hsw sandbox libvirtd (scripts/sandbox.sh). Paths are as libvirtd sees them in its private mount namespace.
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
unix_sock_admin_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
  cat > "$state_dir/etc/qemu.conf" <<EOF
# hsw sandbox (scripts/sandbox.sh): guests run as $qemu_user:$qemu_group, never root; libvirt chowns each guest's
# files to that user at start and gives them back at stop (dynamic_ownership, remember_owner). security_driver is
# the host's LSM ("none" only when its kernel has no AppArmor or SELinux enabled). No cgroups, per-domain mount
# namespaces or virtlogd (nothing of that runs in the sandbox).
user = "$qemu_user"
group = "$qemu_group"
dynamic_ownership = 1
remember_owner = 1
security_driver = "$security_driver"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
EOF
  : > "$state_dir/etc/network.conf"
  # libvirtd probes QEMU's capabilities at start (~8 s); reuse what an earlier sandbox found (libvirt checks
  # that the cached files still match the qemu and libvirtd binaries, and probes again when not).
  mkdir -p "$state_dir/cache/qemu/capabilities"
  if [ -d "$CAPS_CACHE" ]; then cp -a "$CAPS_CACHE/." "$state_dir/cache/qemu/capabilities/" 2>/dev/null || true; fi
}

# Runs inside the netns, in a new private mount namespace; becomes libvirtd. Arguments: RUN_DIR STATE_DIR.
# shellcheck disable=SC2016  # expanded by the inner bash
inner='
set -euo pipefail
run=$1 state=$2
for d in /etc/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt; do
  [ -d "$d" ] || { echo "sandbox: $d is missing: run scripts/install-deps.sh full" >&2; exit 1; }
done
# Keep the sandbox run dir reachable, put a fresh tmpfs on /run (no host dbus, systemd or /run/libvirt), and
# put the run dir back at the same path, so that its socket has one path both inside and outside.
mount --bind "$run" "$state/stash"
mount -t tmpfs -o mode=0755,size=64m hsw-sandbox-run /run
mkdir -p "$run" /run/libvirt
mount --bind "$state/stash" "$run"
umount "$state/stash"
mount --bind "$run/libvirt" /run/libvirt
mount --bind "$state/etc" /etc/libvirt
mount --bind "$state/lib" /var/lib/libvirt
mount --bind "$state/cache" /var/cache/libvirt
mount --bind "$state/log" /var/log/libvirt
exec libvirtd --daemon --config /etc/libvirt/libvirtd.conf --pid-file "$run/libvirtd.pid"
'

do_start() {
  need_root
  for tool in ip unshare nsenter libvirtd virsh; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' is missing: run scripts/install-deps.sh full"
  done
  { id -u "$qemu_user" >/dev/null 2>&1 && getent group "$qemu_group" >/dev/null; } \
    || die "user '$qemu_user' or group '$qemu_group' is missing (libvirt-daemon-system makes them: run scripts/install-deps.sh full, or set HSW_SANDBOX_QEMU_USER / HSW_SANDBOX_QEMU_GROUP)"
  [ "$(id -u "$qemu_user")" != 0 ] || die "HSW_SANDBOX_QEMU_USER '$qemu_user' is root: guests must run unprivileged"
  if alive; then
    say "sandbox '$name' is already running (libvirtd pid $(libvirtd_pid))"
    echo "$uri"
    return 0
  fi
  if netns_exists || [ -e "$run_dir" ] || [ -e "$state_dir" ]; then
    say "cleaning up what a previous run of sandbox '$name' left"
    do_stop
  fi
  say "starting sandbox '$name': netns $name, libvirtd log $logfile"
  if [ "$security_driver" = none ]; then
    say "guests run as $qemu_user:$qemu_group without a security driver: this kernel has neither AppArmor nor SELinux enabled"
  else
    say "guests run as $qemu_user:$qemu_group, confined by $security_driver"
  fi
  write_configs
  ip netns add "$name"
  ip netns exec "$name" ip link set lo up
  if ! ip netns exec "$name" unshare --mount --propagation private -- bash -c "$inner" hsw-sandbox-init \
       "$run_dir" "$state_dir"; then
    say "libvirtd did not start; its log:"; tail -n 20 "$logfile" >&2 2>/dev/null || true
    do_stop; die "start failed"
  fi
  local i
  for i in $(seq 1 100); do
    alive && break
    [ "$i" = 100 ] && { tail -n 20 "$logfile" >&2 2>/dev/null || true; do_stop; die "libvirtd did not answer on $sock"; }
    sleep 0.1
  done
  say "sandbox '$name' is running (libvirtd pid $(libvirtd_pid)); pool dir $pool_dir"
  echo "$uri"
}

# Every pid in the netns (libvirtd, dnsmasq, qemu, exec'd commands).
netns_pids() { if netns_exists; then ip netns pids "$name" 2>/dev/null || true; fi; }

kill_all() {
  local sig=$1 pids
  pids=$(netns_pids)
  [ -n "$pids" ] || return 0
  # shellcheck disable=SC2086  # a list of numbers
  kill "-$sig" $pids 2>/dev/null || true
}

# Keeps the QEMU capabilities libvirtd probed, for the next sandbox (a cache; safe to delete).
save_caps() {
  local src="$state_dir/cache/qemu/capabilities" tmp
  compgen -G "$src/*.xml" >/dev/null || return 0
  mkdir -p "$(dirname "$CAPS_CACHE")"
  tmp=$(mktemp -d "$CAPS_CACHE.XXXXXX") || return 0
  if cp -a "$src/." "$tmp/"; then
    rm -rf --one-file-system "$CAPS_CACHE"
    mv "$tmp" "$CAPS_CACHE" || rm -rf --one-file-system "$tmp"
  else
    rm -rf --one-file-system "$tmp"
  fi
}

do_stop() {
  need_root
  local d n pid i
  if alive; then
    for d in $(virsh_s list --all --name 2>/dev/null); do
      virsh_s destroy "$d" >/dev/null 2>&1 || true
      virsh_s undefine --nvram "$d" >/dev/null 2>&1 || virsh_s undefine "$d" >/dev/null 2>&1 || true
    done
    for n in $(virsh_s net-list --all --name 2>/dev/null); do
      virsh_s net-destroy "$n" >/dev/null 2>&1 || true
      virsh_s net-undefine "$n" >/dev/null 2>&1 || true
    done
    for n in $(virsh_s pool-list --all --name 2>/dev/null); do
      virsh_s pool-destroy "$n" >/dev/null 2>&1 || true
      virsh_s pool-undefine "$n" >/dev/null 2>&1 || true
    done
  fi
  if pid=$(libvirtd_pid); then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  fi
  kill_all TERM
  for i in $(seq 1 50); do [ -z "$(netns_pids)" ] && break; sleep 0.1; done
  kill_all KILL
  for i in $(seq 1 50); do [ -z "$(netns_pids)" ] && break; sleep 0.1; done
  [ -z "$(netns_pids)" ] || die "processes still in netns $name: $(netns_pids | tr '\n' ' ')"
  save_caps
  if netns_exists; then ip netns delete "$name"; fi
  for d in "$run_dir" "$state_dir"; do
    [ -e "$d" ] || continue
    # Never delete through a mount (a sandbox mount seen from here would mean a leak, not ours to remove).
    if awk -v d="$d" '$5 == d || index($5, d "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
      die "$d has mounts under it; not removing it"
    fi
    rm -rf --one-file-system "$d"
  done
  rmdir "$RUN_ROOT" "$STATE_ROOT" 2>/dev/null || true
  say "sandbox '$name' stopped; nothing left"
}

do_status() {
  local pid rc=3
  if alive; then
    pid=$(libvirtd_pid)
    echo "sandbox '$name': running"
    echo "  netns:    $name"
    echo "  libvirtd: pid $pid, log $logfile"
    echo "  uri:      $uri"
    echo "  pool dir: $pool_dir"
    echo "  domains:  $(virsh_s list --all --name | grep -c . || true)"
    echo "  networks: $(virsh_s net-list --all --name | grep -c . || true)"
    rc=0
  else
    local left=()
    netns_exists && left+=("netns $name")
    [ -e "$run_dir" ] && left+=("$run_dir")
    [ -e "$state_dir" ] && left+=("$state_dir")
    [ -n "$(netns_pids)" ] && left+=("processes $(netns_pids | tr '\n' ' ')")
    if [ ${#left[@]} -gt 0 ]; then
      echo "sandbox '$name': not running, but left over: ${left[*]} (run: $0 --name $name stop)"
      rc=1
    else
      echo "sandbox '$name': not running"
    fi
  fi
  return "$rc"
}

do_exec() {
  need_root
  [ "${1:-}" = "--" ] && shift
  [ $# -ge 1 ] || die "exec needs a command: exec -- CMD..."
  local pid
  pid=$(libvirtd_pid) || die "sandbox '$name' is not running (start it first)"
  exec nsenter --target "$pid" --net --mount --wd="$PWD" -- \
    env LIBVIRT_DEFAULT_URI="$uri" HSW_SANDBOX_NAME="$name" HSW_SANDBOX_URI="$uri" \
        HSW_SANDBOX_POOL_DIR="$pool_dir" "$@"
}

do_env() {
  if [ $# -eq 0 ]; then print_env; return; fi
  case "$1" in
    URI|HSW_SANDBOX_URI|LIBVIRT_DEFAULT_URI) echo "$uri" ;;
    NAME|NETNS|HSW_SANDBOX_NAME|HSW_SANDBOX_NETNS) echo "$name" ;;
    SOCKET|HSW_SANDBOX_SOCKET) echo "$sock" ;;
    POOL_DIR|HSW_SANDBOX_POOL_DIR) echo "$pool_dir" ;;
    RUN_DIR|HSW_SANDBOX_RUN_DIR) echo "$run_dir" ;;
    STATE_DIR|HSW_SANDBOX_STATE_DIR) echo "$state_dir" ;;
    LOG|HSW_SANDBOX_LOG) echo "$logfile" ;;
    QEMU_USER|HSW_SANDBOX_QEMU_USER) echo "$qemu_user" ;;
    SECURITY_DRIVER|HSW_SANDBOX_SECURITY_DRIVER) echo "$security_driver" ;;
    *) die "unknown key '$1' (one of URI NAME NETNS SOCKET POOL_DIR RUN_DIR STATE_DIR LOG QEMU_USER SECURITY_DRIVER)" ;;
  esac
}

case "$cmd" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  exec) do_exec "$@" ;;
  env) do_env "$@" ;;
  *) usage >&2; exit 2 ;;
esac
