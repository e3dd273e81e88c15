# shellcheck shell=bash
# The benches' baseline (tests/bench/apply-default.sh, tests/bench/up.sh): the VMs that `hsw-cli up` made, booted
# again to their DHCP leases by a plain shell script, everything that can run at once at once. Sourced after
# tests/lib.sh, with `sandbox_name` set and that sandbox running; never run.
#
#   plain_record WORK        records what is defined in the sandbox's libvirt: every network's and domain's XML
#                            (`--inactive`, so the DHCP reservations and MACs are the same), each VM's overlay
#                            (backing file, size) and its cloud-init seed files, into WORK/rec; writes the plain
#                            script WORK/plain.sh and its teardown WORK/plain-down.sh; sets plain_nets, plain_doms
#   plain_boot WORK NAME     runs the plain script in the sandbox (log WORK/plain-NAME.log), then its teardown;
#                            sets plain_ms (the script's time, ms) and fails when something is left
#   plain_nothing_left WORK WHAT   fails when a recorded domain, network or VM directory is still there
#   ms                       the time now in milliseconds
#   median N...              the middle value (the mean of the two middle ones for an even count)
#
# The plain script, run as one `bash` inside the sandbox: both networks at once (net-define, net-start,
# net-autostart); then every VM at once: mkdir, `qemu-img create` overlay on the same base image, the seed ISO with
# genisoimage from the same files, `virsh define`, `virsh start`, then `virsh domifaddr --source lease` every 0.5 s
# (the provider's interval) until its MAC has a lease. It skips what the provider also does (checking the base
# image and kernel, resolving the accelerator, the simulated MIG instances, Terraform's refresh and plan).

ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() {
  printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

plain_uri() { sandbox env URI; }
plain_vsh() { sandbox exec -- virsh -q -c "$(plain_uri)" "$@"; }

plain_nets=() plain_doms=()
plain_record() {
  local work=$1 n d mac disk info base size vmdir
  mkdir -p "$work/rec"
  mapfile -t plain_nets < <(plain_vsh net-list --all --name | sed '/^$/d')
  mapfile -t plain_doms < <(plain_vsh list --all --name | sed '/^$/d')
  { [ ${#plain_nets[@]} -gt 0 ] && [ ${#plain_doms[@]} -gt 0 ]; } || fail "hsw-cli up left no networks or domains to measure"
  say "recording ${#plain_nets[@]} networks (${plain_nets[*]}) and ${#plain_doms[@]} domains (${plain_doms[*]})"
  : >"$work/rec/vms"
  for n in "${plain_nets[@]}"; do plain_vsh net-dumpxml --inactive "$n" >"$work/rec/net-$n.xml"; done
  for d in "${plain_doms[@]}"; do
    plain_vsh dumpxml --inactive "$d" >"$work/rec/dom-$d.xml"
    mac=$(grep -o "<mac address='[^']*'" "$work/rec/dom-$d.xml" | head -1 | cut -d"'" -f2)
    [ -n "$mac" ] || fail "domain $d has no MAC in its XML"
    # The VM directory: where its root overlay is.
    disk=$(grep -o "<source file='[^']*root.qcow2'" "$work/rec/dom-$d.xml" | head -1 | cut -d"'" -f2)
    [ -n "$disk" ] || fail "domain $d has no root.qcow2 disk"
    info=$(sandbox exec -- qemu-img info -U --output=json "$disk")
    base=$(jq -r '."full-backing-filename" // ."backing-filename"' <<<"$info")
    size=$(jq -r '."virtual-size"' <<<"$info")
    vmdir=$(dirname "$disk")
    sandbox exec -- test -d "$vmdir/cidata" || fail "domain $d has no seed directory $vmdir/cidata"
    mkdir -p "$work/rec/seed-$d"
    sandbox exec -- tar -C "$vmdir/cidata" -cf - . | tar -C "$work/rec/seed-$d" -xf -
    printf '%s %s %s %s %s\n' "$d" "$mac" "$vmdir" "$base" "$size" >>"$work/rec/vms"
  done

  cat >"$work/plain.sh" <<'SH'
#!/usr/bin/env bash
# The baseline: the same libvirt objects as the Terraform apply, made with virsh, qemu-img and genisoimage,
# everything that can run at once at once. Usage: plain.sh URI RECORD_DIR
set -euo pipefail
uri=$1 rec=$2
v() { virsh -q -c "$uri" "$@" >/dev/null; }
net_up() { v net-define "$rec/net-$1.xml"; v net-start "$1"; v net-autostart "$1"; }
vm_up() {
  local d=$1 mac=$2 dir=$3 base=$4 size=$5
  mkdir -p -m 0700 "$dir" "$dir/cidata"
  qemu-img create -q -f qcow2 -F qcow2 -b "$base" "$dir/root.qcow2" "$size"
  cp "$rec/seed-$d"/* "$dir/cidata/"
  (cd "$dir/cidata" && genisoimage -quiet -output "$dir/cidata.iso" -volid cidata -joliet -rock ./*)
  v define "$rec/dom-$d.xml"
  v start "$d"
  until virsh -q -c "$uri" domifaddr "$d" --source lease 2>/dev/null | grep -qi "$mac"; do sleep 0.5; done
}
pids=()
for f in "$rec"/net-*.xml; do n=${f##*/net-}; net_up "${n%.xml}" & pids+=($!); done
for p in "${pids[@]}"; do wait "$p"; done
pids=()
while read -r d mac dir base size; do vm_up "$d" "$mac" "$dir" "$base" "$size" & pids+=($!); done <"$rec/vms"
for p in "${pids[@]}"; do wait "$p"; done
SH
  cat >"$work/plain-down.sh" <<'SH'
#!/usr/bin/env bash
set -uo pipefail
uri=$1 rec=$2
while read -r d _ dir _; do
  virsh -q -c "$uri" destroy "$d" >/dev/null 2>&1
  virsh -q -c "$uri" undefine "$d" >/dev/null
  rm -rf --one-file-system "$dir"
done <"$rec/vms"
for f in "$rec"/net-*.xml; do
  n=${f##*/net-}; n=${n%.xml}
  virsh -q -c "$uri" net-destroy "$n" >/dev/null 2>&1
  virsh -q -c "$uri" net-undefine "$n" >/dev/null
done
SH
}

plain_nothing_left() {
  local work=$1 what=$2 left dir
  left="$(plain_vsh list --all --name)$(plain_vsh net-list --all --name)"
  while read -r _ _ dir _; do sandbox exec -- test ! -e "$dir" || left+=" $dir"; done <"$work/rec/vms"
  [ -z "$(tr -d '[:space:]' <<<"$left")" ] || fail "after $what, still there: $left"
}

# shellcheck disable=SC2034  # read by the benches that source this
plain_ms=0
plain_boot() {
  local work=$1 name=$2 uri t0
  uri=$(plain_uri)
  t0=$(ms)
  sandbox exec -- bash "$work/plain.sh" "$uri" "$work/rec" >"$work/plain-$name.log" 2>&1 \
    || fail "the plain script failed ($work/plain-$name.log)"
  # shellcheck disable=SC2034  # read by the benches that source this
  plain_ms=$(( $(ms) - t0 ))
  sandbox exec -- bash "$work/plain-down.sh" "$uri" "$work/rec" >"$work/plain-down-$name.log" 2>&1
  plain_nothing_left "$work" "the plain script's teardown"
}
