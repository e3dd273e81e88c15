#!/usr/bin/env bash
# Benchmark (not a test): `terraform plan` of 200 stopped hsw_vm against a sandbox libvirtd, with
# `terraform plan` of 200 built-in `terraform_data` resources as the baseline measured in the same run.
# Goal: ratio <= 1.5x (HashiCorp's Go null provider measures 2.2x with 200 no-op resources).
#
# Everything runs inside a sandbox network namespace (scripts/sandbox.sh, name hsw-bench); the VMs are
# defined but never started, from an empty qcow2 base, so no guest boots.
# Usage: tests/bench/plan-200.sh [RUNS]      (default 5 plans each; needs terraform >= 1.4 on PATH)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
runs=${1:-5}
n=200
name=hsw-bench
sandbox() { "$root/scripts/sandbox.sh" --name "$name" "$@"; }

tf_bin=$(command -v terraform) || { echo "plan-200: no terraform on PATH" >&2; exit 2; }
(cd "$root" && cargo build --release --locked -p terraform-provider-hsw --bin terraform-provider-hsw) >&2
target_dir=$(cd "$root" && cargo metadata --no-deps --format-version 1 | jq -r .target_directory)
provider_bin="$target_dir/release/terraform-provider-hsw"

work=$(mktemp -d /var/tmp/hsw-bench.XXXXXX)
cleanup() { set +e; sandbox stop >/dev/null 2>&1; rm -rf --one-file-system "$work"; }
trap cleanup EXIT
sandbox stop >/dev/null 2>&1 || true
uri=$(sandbox start)
pool=$(sandbox env POOL_DIR)

plat="$work/mirror/registry.terraform.io/hyperscaler/hsw/0.1.0/linux_amd64"
mkdir -p "$plat" "$work/hsw" "$work/data" "$pool/images"
cp "$provider_bin" "$plat/terraform-provider-hsw"
printf 'provider_installation {\n  filesystem_mirror {\n    path    = "%s"\n    include = ["hyperscaler/hsw"]\n  }\n  direct {\n    exclude = ["hyperscaler/hsw"]\n  }\n}\n' "$work/mirror" > "$work/cli.tfrc"
qemu-img create -q -f qcow2 "$pool/images/empty.qcow2" 1G

cat > "$work/hsw/main.tf" <<HCL
terraform {
  required_providers {
    hsw = { source = "hyperscaler/hsw", version = "0.1.0" }
  }
}
provider "hsw" {
  uri      = "$uri"
  pool_dir = "$pool"
}
resource "hsw_vm" "vm" {
  count       = $n
  name        = "bench-\${count.index}"
  vcpu        = 1
  memory      = 128
  accelerator = "tcg"
  base_image  = "$pool/images/empty.qcow2"
  running     = false
}
HCL
cat > "$work/data/main.tf" <<HCL
resource "terraform_data" "d" {
  count = $n
  input = "item-\${count.index}"
}
HCL

tf() { sandbox exec -- env TF_CLI_CONFIG_FILE="$work/cli.tfrc" CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1 TF_INPUT=0 "$tf_bin" "$@"; }
for d in hsw data; do
  tf -chdir="$work/$d" init -no-color >/dev/null
  echo "plan-200: applying $n resources ($d)" >&2
  tf -chdir="$work/$d" apply -auto-approve -no-color -parallelism=10 >/dev/null
done

median_ms() {   # median_ms DIR: median wall time of `terraform plan` over $runs runs
  local d=$1 t0 t1 times=()
  for _ in $(seq "$runs"); do
    t0=$(date +%s%N)
    tf -chdir="$work/$d" plan -no-color -detailed-exitcode >/dev/null
    t1=$(date +%s%N)
    times+=($(( (t1 - t0) / 1000000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p"
}
# Interleave nothing else; measure the baseline first, then ours, then the baseline again.
b1=$(median_ms data); h=$(median_ms hsw); b2=$(median_ms data)
b=$(( (b1 + b2) / 2 ))
echo "terraform plan, $n resources, median of $runs: hsw_vm (stopped) ${h} ms; terraform_data ${b} ms (${b1}, ${b2})"
awk -v h="$h" -v b="$b" 'BEGIN { printf "ratio: %.2fx (goal <= 1.5x)\n", h / b }'
echo "load average (1, 5, 15 min): $(cut -d' ' -f1-3 /proc/loadavg | sed 's/ /, /g')"
tf -chdir="$work/hsw" destroy -auto-approve -no-color -parallelism=10 >/dev/null
