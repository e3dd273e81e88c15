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
# The plain script (tests/bench/plain-boot.sh, which tests/bench/up.sh shares), run as one `bash` inside the
# sandbox, per round: both networks at once, then every VM at once, each until its MAC has a DHCP lease. It skips
# what the provider also does (checking the base image and kernel, resolving the accelerator, the three simulated
# MIG instances of the gpu_partition module, Terraform's refresh and plan): the ratio is Terraform's and the
# provider's whole cost.
#
# Usage: tests/bench/apply-default.sh [RUNS]     (default 3 rounds; medians reported)
# Needs root and `scripts/install-deps.sh full` (what tests/e2e/up.sh needs). Every packet stays in the netns.
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/../lib.sh" apply-default
# shellcheck source=tests/bench/plain-boot.sh
. "$(dirname "$0")/plain-boot.sh"
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

tf() { sandbox_terraform "$state/terraformrc" terraform -chdir="$state/terraform" "$@"; }

# 2. Record what Terraform made (tests/bench/plain-boot.sh), and the plain script.
plain_record "$work"
nets=("${plain_nets[@]}") doms=("${plain_doms[@]}")

say "terraform destroy (the recorded cluster)"
tf destroy -auto-approve -no-color -input=false >"$work/destroy-0.log" 2>&1 || fail "terraform destroy failed ($work/destroy-0.log)"
plain_nothing_left "$work" "terraform destroy"

tf_times=() plain_times=()
for r in $(seq "$runs"); do
  say "round $r/$runs: terraform apply"
  t0=$(ms)
  tf apply -auto-approve -no-color -input=false >"$work/apply-$r.log" 2>&1 || fail "terraform apply failed ($work/apply-$r.log)"
  tf_times+=($(( $(ms) - t0 )))
  tf destroy -auto-approve -no-color -input=false >"$work/destroy-$r.log" 2>&1 || fail "terraform destroy failed ($work/destroy-$r.log)"
  plain_nothing_left "$work" "terraform destroy"

  say "round $r/$runs: the plain script"
  plain_boot "$work" "$r"
  plain_times+=("$plain_ms")
  say "round $r: terraform apply ${tf_times[-1]} ms, plain script ${plain_times[-1]} ms (load: $(cut -d' ' -f1-3 /proc/loadavg))"
done

ratios=()
for i in "${!tf_times[@]}"; do
  ratios+=("$(awk -v t="${tf_times[$i]}" -v p="${plain_times[$i]}" 'BEGIN { printf "%.2f", t / p }')")
done
t=$(median "${tf_times[@]}") p=$(median "${plain_times[@]}")
echo "default cluster (${#nets[@]} networks, ${#doms[@]} VMs, booted with DHCP leases), median of $runs rounds:" \
  "terraform apply ${t} ms; plain parallel script ${p} ms"
echo "rounds (terraform/plain ms = ratio): $(for i in "${!tf_times[@]}"; do printf '%s/%s = %sx; ' "${tf_times[$i]}" "${plain_times[$i]}" "${ratios[$i]}"; done)"
awk -v t="$t" -v p="$p" 'BEGIN { printf "ratio of the medians: %.2fx (goal <= 1.15x)\n", t / p }'
