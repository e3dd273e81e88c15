#!/usr/bin/env bash
# Benchmark (not a test): `terraform apply` of the embedded default cluster (examples/minimal-dev.yaml, the root
# module `hsw-cli up` generates) against a plain shell script that makes the same libvirt objects with the same
# calls, in parallel, measured in the same run. Goal: ratio <= 1.15x.
#
# How:
#   1. `hsw-cli up --no-verify` once, in sandbox hsw-apply-bench (its own netns and libvirtd): images, keys,
#      the generated root module, `terraform init`, apply, the HPC playbook.
#   2. From what Terraform made, record what the plain script needs: every network's and domain's XML
#      (`virsh net-dumpxml/dumpxml --inactive`, so DHCP reservations and MACs are the same), each VM's overlay
#      (backing file, size) and its cloud-init seed files. Then `terraform destroy`.
#   3. RUNS rounds, alternating: `terraform apply -auto-approve` in the root (refresh, plan, apply: what a user
#      runs), `terraform destroy`; the plain script, its teardown. Both end when every VM has booted and holds
#      its DHCP lease (the generated root sets wait_for_ip), so both include the guests' boot.
#   4. `hsw-cli down`.
#
# The plain script, run as one `bash` inside the sandbox, per round: both networks at once (net-define,
# net-start, net-autostart); then every VM at once: mkdir, `qemu-img create` overlay on the same base image,
# the seed ISO with genisoimage from the same files, `virsh define`, `virsh start`, then `virsh domifaddr
# --source lease` every 0.5 s (the provider's interval) until its MAC has a lease. It skips what the provider
# also does (checking the base image and kernel, resolving the accelerator, the three simulated MIG instances of
# the gpu_partition module, Terraform's refresh and plan): the ratio is Terraform's and the provider's whole cost.
#
# Usage: tests/bench/apply-default.sh [RUNS]     (default 3 rounds; medians reported)
# Needs root and `scripts/install-deps.sh full` (what tests/e2e/up.sh needs). Every packet stays in the netns.
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/../lib.sh" apply-default
runs=${1:-3}
sandbox_name=hsw-apply-bench
work=/var/tmp/hsw-apply-bench
state="$work/state"

require_root
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || fail "RUNS must be a positive number, not '$runs'"
require_tools virsh jq qemu-img genisoimage terraform

say "building hsw-cli and terraform-provider-hsw (release)"
cargo_build release -p hsw-cli -p terraform-provider-hsw
cli="$bin_dir/hsw-cli"
export HSW_PROVIDER_BIN="$bin_dir/terraform-provider-hsw"

cleanup() {
  set +e
  "$cli" down --sandbox-name "$sandbox_name" --state-dir "$state" >/dev/null 2>&1
  sandbox stop >/dev/null 2>&1
}
on_exit cleanup
cleanup
rm -rf --one-file-system "$work"
mkdir -p "$work/rec"

say "hsw-cli up (once, to make images, keys, the root module and terraform init; log $work/up.log)"
"$cli" up --sandbox-name "$sandbox_name" --state-dir "$state" --no-verify --hpc-only >"$work/up.log" 2>&1 \
  || { tail -30 "$work/up.log" >&2; fail "hsw-cli up failed (log $work/up.log)"; }

uri=$(sandbox env URI)
in_sb() { sandbox exec -- "$@"; }
vsh() { in_sb virsh -q -c "$uri" "$@"; }
tf() { sandbox_terraform "$state/terraformrc" terraform -chdir="$state/terraform" "$@"; }

# 2. Record what Terraform made.
mapfile -t nets < <(vsh net-list --all --name | sed '/^$/d')
mapfile -t doms < <(vsh list --all --name | sed '/^$/d')
{ [ ${#nets[@]} -gt 0 ] && [ ${#doms[@]} -gt 0 ]; } || fail "hsw-cli up left no networks or domains to measure"
say "recording ${#nets[@]} networks (${nets[*]}) and ${#doms[@]} domains (${doms[*]})"
for n in "${nets[@]}"; do vsh net-dumpxml --inactive "$n" >"$work/rec/net-$n.xml"; done
for d in "${doms[@]}"; do
  vsh dumpxml --inactive "$d" >"$work/rec/dom-$d.xml"
  mac=$(grep -o "<mac address='[^']*'" "$work/rec/dom-$d.xml" | head -1 | cut -d"'" -f2)
  [ -n "$mac" ] || fail "domain $d has no MAC in its XML"
  # The VM directory: where its root overlay is.
  disk=$(grep -o "<source file='[^']*root.qcow2'" "$work/rec/dom-$d.xml" | head -1 | cut -d"'" -f2)
  [ -n "$disk" ] || fail "domain $d has no root.qcow2 disk"
  info=$(in_sb qemu-img info -U --output=json "$disk")
  base=$(jq -r '."full-backing-filename" // ."backing-filename"' <<<"$info")
  size=$(jq -r '."virtual-size"' <<<"$info")
  vmdir=$(dirname "$disk")
  in_sb test -d "$vmdir/cidata" || fail "domain $d has no seed directory $vmdir/cidata"
  mkdir -p "$work/rec/seed-$d"
  in_sb tar -C "$vmdir/cidata" -cf - . | tar -C "$work/rec/seed-$d" -xf -
  printf '%s %s %s %s %s\n' "$d" "$mac" "$vmdir" "$base" "$size" >>"$work/rec/vms"
done

# The plain script and its teardown: run inside the sandbox as one process tree each.
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

nothing_left() {  # nothing_left WHAT: no domain, network or VM directory remains
  local left
  left="$(vsh list --all --name)$(vsh net-list --all --name)"
  while read -r _ _ dir _; do in_sb test ! -e "$dir" || left+=" $dir"; done <"$work/rec/vms"
  [ -z "$(tr -d '[:space:]' <<<"$left")" ] || fail "after $1, still there: $left"
}

say "terraform destroy (the recorded cluster)"
tf destroy -auto-approve -no-color -input=false >"$work/destroy-0.log" 2>&1 || fail "terraform destroy failed ($work/destroy-0.log)"
nothing_left "terraform destroy"

ms() { echo $(( $(date +%s%N) / 1000000 )); }
tf_times=() plain_times=()
for r in $(seq "$runs"); do
  say "round $r/$runs: terraform apply"
  t0=$(ms)
  tf apply -auto-approve -no-color -input=false >"$work/apply-$r.log" 2>&1 || fail "terraform apply failed ($work/apply-$r.log)"
  tf_times+=($(( $(ms) - t0 )))
  tf destroy -auto-approve -no-color -input=false >"$work/destroy-$r.log" 2>&1 || fail "terraform destroy failed ($work/destroy-$r.log)"
  nothing_left "terraform destroy"

  say "round $r/$runs: the plain script"
  t0=$(ms)
  in_sb bash "$work/plain.sh" "$uri" "$work/rec" >"$work/plain-$r.log" 2>&1 || fail "the plain script failed ($work/plain-$r.log)"
  plain_times+=($(( $(ms) - t0 )))
  in_sb bash "$work/plain-down.sh" "$uri" "$work/rec" >"$work/plain-down-$r.log" 2>&1
  nothing_left "the plain script's teardown"
  say "round $r: terraform apply ${tf_times[-1]} ms, plain script ${plain_times[-1]} ms (load: $(cut -d' ' -f1-3 /proc/loadavg))"
done

median() {  # median N...: the middle value (the mean of the two middle ones for an even count)
  printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratios=()
for i in "${!tf_times[@]}"; do
  ratios+=("$(awk -v t="${tf_times[$i]}" -v p="${plain_times[$i]}" 'BEGIN { printf "%.2f", t / p }')")
done
t=$(median "${tf_times[@]}") p=$(median "${plain_times[@]}")
echo "default cluster (${#nets[@]} networks, ${#doms[@]} VMs, booted with DHCP leases), median of $runs rounds:" \
  "terraform apply ${t} ms; plain parallel script ${p} ms"
echo "rounds (terraform/plain ms = ratio): $(for i in "${!tf_times[@]}"; do printf '%s/%s = %sx; ' "${tf_times[$i]}" "${plain_times[$i]}" "${ratios[$i]}"; done)"
awk -v t="$t" -v p="$p" 'BEGIN { printf "ratio of the medians: %.2fx (goal <= 1.15x)\n", t / p }'
