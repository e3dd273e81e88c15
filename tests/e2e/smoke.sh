#!/usr/bin/env bash
# Smoke test of the end-to-end harness, with plain virsh (no Terraform, no provider):
#   sandbox (netns + private libvirtd) -> guest image (built or cached) -> isolated network with DHCP ->
#   a TCG guest (direct kernel boot, qcow2 overlay, NoCloud seed from cloud-localds) -> DHCP lease ->
#   ssh from inside the netns -> hostname check -> QEMU runs as the sandbox's unprivileged user, owning the 0600
#   disks only while the guest runs, reading the shared base image (root's 0644, `<seclabel model='dac'
#   relabel='no'/>` on the backing store, else libvirt chowns it to QEMU's user) -> teardown -> nothing left.
#
# Usage: tests/e2e/smoke.sh [--keep] [--netconfig mac|none]
#   --keep            on failure, leave the sandbox (and the guest) running for debugging;
#                     `scripts/sandbox.sh --name hsw-e2e-smoke stop` removes it
#   --netconfig mac   (default) the seed has a network-config matching the NIC by MAC with set-name eth0
#   --netconfig none  no network-config: the guest relies on cloud-init's fallback (DHCP on eth0)
# Environment: HSW_E2E_SANDBOX (sandbox name, default hsw-e2e-smoke), HSW_IMAGE_DIR (image cache),
#   HSW_E2E_BOOT_TIMEOUT (seconds to wait for the lease and for ssh, default 240).
# Needs root and `scripts/install-deps.sh full`. All guest traffic stays inside the sandbox's netns.
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/../lib.sh" smoke

sandbox_name="${HSW_E2E_SANDBOX:-hsw-e2e-smoke}"
boot_timeout="${HSW_E2E_BOOT_TIMEOUT:-240}"
keep=0
netconfig=mac
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=1; shift ;;
    --netconfig) [ $# -ge 2 ] || usage_error "--netconfig needs mac|none"; netconfig=$2; shift 2 ;;
    -h|--help) show_help 16; exit 0 ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done
case "$netconfig" in mac|none) ;; *) usage_error "--netconfig must be mac or none" ;; esac
[[ "$boot_timeout" =~ ^[0-9]+$ ]] || usage_error "HSW_E2E_BOOT_TIMEOUT must be a number"

require_root
require_tools virsh qemu-img cloud-localds ssh ssh-keygen ip

net=hswe2e
bridge=hswe2e0
dom=hsw-smoke
mac=52:54:00:e2:e0:01
guest_hostname=hsw-smoke-guest

started=0
work=""
cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ "$started" = 1 ]; then
    echo "--- smoke failed (exit $rc); diagnostics:" >&2
    [ -n "$work" ] && [ -f "$work/console.log" ] && { echo "--- guest console (last 40 lines)" >&2; tail -n 40 "$work/console.log" >&2; }
    echo "--- libvirtd log (last 20 lines)" >&2
    tail -n 20 "$(sandbox env LOG)" >&2 2>/dev/null || true
  fi
  if [ "$started" = 1 ]; then
    if [ "$keep" = 1 ] && [ "$rc" -ne 0 ]; then
      echo "smoke: --keep: sandbox '$sandbox_name' left running ($(sandbox env URI))" >&2
    else
      sandbox stop || true
    fi
  fi
  exit "$rc"
}
on_exit cleanup

step "image (built once, then cached)"
t0=$(date +%s)
build_image --role hpc
info "image ready in $(( $(date +%s) - t0 )) s: $img_base"

step "sandbox '$sandbox_name'"
sandbox stop >/dev/null 2>&1 || true   # whatever a crashed earlier run left
started=1
uri=$(sandbox start)
pool=$(sandbox env POOL_DIR)
ns=$(sandbox env NETNS)
info "uri $uri"
v() { timeout 60 virsh -q -c "$uri" "$@"; }

work="$pool/smoke"
mkdir -p "$work"
chmod 0711 "$work"   # as the provider keeps a VM's directory: QEMU passes through, never lists it
qemu_user=$(sandbox env QEMU_USER)
info "guests run as $qemu_user, security driver $(sandbox env SECURITY_DRIVER)"
ssh-keygen -q -t ed25519 -N '' -C hsw-smoke -f "$work/id_ed25519"

step "network $net (isolated, DHCP, bridge $bridge, 192.168.150.0/24)"
cat > "$work/net.xml" <<EOF
<network>
  <name>$net</name>
  <bridge name='$bridge' stp='off' delay='0'/>
  <ip address='192.168.150.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.150.10' end='192.168.150.99'/>
    </dhcp>
  </ip>
</network>
EOF
v net-define "$work/net.xml" >/dev/null
v net-start "$net" >/dev/null

step "guest disk and NoCloud seed"
qemu-img create -q -f qcow2 -F qcow2 -b "$img_base" "$work/root.qcow2"
cat > "$work/user-data" <<EOF
#cloud-config
hostname: $guest_hostname
ssh_authorized_keys:
  - $(cat "$work/id_ed25519.pub")
EOF
printf 'instance-id: %s-%s\nlocal-hostname: %s\n' "$dom" "$(date +%s)" "$guest_hostname" > "$work/meta-data"
seed_args=("$work/seed.iso" "$work/user-data" "$work/meta-data")
if [ "$netconfig" = mac ]; then
  cat > "$work/network-config" <<EOF
version: 2
ethernets:
  eth0:
    match:
      macaddress: "$mac"
    set-name: eth0
    dhcp4: true
EOF
  seed_args=(--network-config="$work/network-config" "${seed_args[@]}")
fi
cloud-localds "${seed_args[@]}"
chmod 0600 "$work/root.qcow2" "$work/seed.iso"   # as the provider makes them: root's alone until libvirt chowns
info "seed: hostname $guest_hostname, key $work/id_ed25519.pub, network-config: $netconfig"

cat > "$work/domain.xml" <<EOF
<domain type='qemu'>
  <name>$dom</name>
  <memory unit='MiB'>1024</memory>
  <vcpu>2</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>$img_kernel</kernel>
    <initrd>$img_initrd</initrd>
    <cmdline>root=/dev/vda rw console=ttyS0 net.ifnames=0</cmdline>
  </os>
  <features><acpi/><apic/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$work/root.qcow2'/>
      <backingStore type='file'>
        <format type='qcow2'/>
        <source file='$img_base'>
          <seclabel model='dac' relabel='no'/>
        </source>
        <backingStore/>
      </backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='$work/seed.iso'/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>
    <interface type='network'>
      <source network='$net'/>
      <mac address='$mac'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='$work/console.log'/>
      <target port='0'/>
    </serial>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
v define "$work/domain.xml" >/dev/null

step "booting $dom (TCG, 2 vCPU, 1 GiB; console log $work/console.log)"
t_boot=$(date +%s)
v start "$dom" >/dev/null
info "domain started in $(( $(date +%s) - t_boot )) s; waiting up to ${boot_timeout} s for a DHCP lease on $net for $mac"
ip_addr=""
while [ -z "$ip_addr" ]; do
  ip_addr=$(v net-dhcp-leases "$net" --mac "$mac" 2>/dev/null \
            | awk '{ for (i = 1; i < NF; i++) if ($i == "ipv4") { ip = $(i + 1); sub(/\/.*/, "", ip); print ip; exit } }' \
            || true)
  [ -n "$ip_addr" ] && break
  [ "$(v domstate "$dom" 2>/dev/null)" = running ] || fail "$dom is no longer running"
  [ $(( $(date +%s) - t_boot )) -lt "$boot_timeout" ] || fail "no DHCP lease for $dom after ${boot_timeout} s"
  sleep 1
done
t_lease=$(( $(date +%s) - t_boot ))
info "lease $ip_addr after ${t_lease} s"

ssh_opts=(-i "$work/id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes
          -o ConnectTimeout=5 -o LogLevel=ERROR)
gssh() { ip netns exec "$ns" ssh "${ssh_opts[@]}" "hsw@$ip_addr" "$@"; }
info "waiting for sshd on $ip_addr (inside netns $ns)"
got=""
while :; do
  got=$(gssh hostname 2>/dev/null || true)
  [ -n "$got" ] && break
  [ $(( $(date +%s) - t_boot )) -lt "$boot_timeout" ] || fail "ssh hsw@$ip_addr did not answer after ${boot_timeout} s"
  sleep 2
done
t_ssh=$(( $(date +%s) - t_boot ))
info "ssh answered after ${t_ssh} s: hostname '$got'"
[ "$got" = "$guest_hostname" ] || fail "guest hostname is '$got', expected '$guest_hostname'"

step "guest checks"
# shellcheck disable=SC2016  # runs in the guest
checks=$(gssh 'sudo -n id -u; sudo -n passwd -S root | cut -d" " -f2; ip -4 -o addr show eth0 | wc -l;
               cloud-init status --wait | sed -n "s/^status: //p"; sudo -n systemctl --failed --plain --no-legend | wc -l' \
         2>&1) || fail "guest checks did not run: $checks"
mapfile -t c <<< "$checks"
[ "${c[0]:-}" = 0 ] || fail "passwordless sudo for hsw does not work: $checks"
[ "${c[1]:-}" = L ] || fail "root's password is not locked (passwd -S says '${c[1]:-}')"
[ "${c[2]:-}" = 1 ] || fail "eth0 has no IPv4 address: $checks"
[ "${c[3]:-}" = "done" ] || fail "cloud-init status is '${c[3]:-}' (see: cloud-init status --long)"
[ "${c[4]:-}" = 0 ] || fail "failed units in the guest: $(gssh sudo -n systemctl --failed --plain --no-legend 2>&1)"
info "sudo works, root password locked, eth0 configured, cloud-init done, no failed units ($(( $(date +%s) - t_boot )) s)"

step "QEMU runs unprivileged"
qemu_users=()
for p in $(ip netns pids "$ns"); do
  [ "$(cat "/proc/$p/comm" 2>/dev/null)" = qemu-system-x86 ] || continue
  qemu_users+=("$(ps -o user= -p "$p")")
done
[ "${#qemu_users[@]}" = 1 ] || fail "expected one QEMU process in netns $ns, found ${#qemu_users[@]}"
[ "${qemu_users[0]}" = "$qemu_user" ] || fail "QEMU runs as '${qemu_users[0]}', expected '$qemu_user'"
disk_owner=$(stat -c %U "$work/root.qcow2")
[ "$disk_owner" = "$qemu_user" ] || fail "root.qcow2 is owned by '$disk_owner' while the guest runs, expected '$qemu_user'"
base_owner=$(stat -c '%U:%G %a' "$img_base")
[ "$base_owner" = "root:root 644" ] \
  || fail "the shared base image $img_base is '$base_owner' while the guest runs, expected 'root:root 644' (read-only to QEMU)"
info "QEMU runs as $qemu_user; root.qcow2 is $(stat -c '%U %a' "$work/root.qcow2") while the guest runs; the base image stays root's 0644"

step "teardown"
v destroy "$dom" >/dev/null
disk_owner=$(stat -c '%U %a' "$work/root.qcow2")
[ "$disk_owner" = "root 600" ] || fail "root.qcow2 is '$disk_owner' after the guest stopped, expected 'root 600'"
info "after destroy root.qcow2 is back to root 0600"
v undefine "$dom" >/dev/null
v net-destroy "$net" >/dev/null
v net-undefine "$net" >/dev/null
rm -rf --one-file-system "$work"
[ -z "$(v list --all --name)" ] || fail "domains left: $(v list --all --name)"
[ -z "$(v net-list --all --name)" ] || fail "networks left: $(v net-list --all --name)"
[ -z "$(find "$pool" -mindepth 1 -print -quit)" ] || fail "files left in $pool"
if ip netns exec "$ns" ip link show "$bridge" >/dev/null 2>&1; then fail "bridge $bridge left in netns $ns"; fi
run_dir=$(sandbox env RUN_DIR)
state_dir=$(sandbox env STATE_DIR)
mapfile -t ns_pids < <(ip netns pids "$ns")
info "processes in the sandbox before stop: ${#ns_pids[@]}"
started=0
sandbox stop
[ ! -e "/run/netns/$ns" ] || fail "netns $ns left"
[ ! -e "$run_dir" ] || fail "$run_dir left"
[ ! -e "$state_dir" ] || fail "$state_dir left"
for p in "${ns_pids[@]}"; do
  [ ! -d "/proc/$p" ] || fail "process $p ($(cat "/proc/$p/comm" 2>/dev/null)) outlived the sandbox"
done

step "PASSED: boot to DHCP lease ${t_lease} s, to ssh ${t_ssh} s; whole smoke test $(( $(date +%s) - t_all )) s"
