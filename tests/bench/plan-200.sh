#!/usr/bin/env bash
# Benchmark (not a test): `terraform plan` of 200 stopped hsw_vm against a sandbox libvirtd, with
# `terraform plan` of 200 built-in `terraform_data` resources as the baseline measured in the same run.
# Goal: ratio <= 1.5x (HashiCorp's Go null provider measures 2.2x with 200 no-op resources).
# Then one more plan of each to show where the CPU goes: Terraform, the provider's processes, libvirtd.
#
# Everything runs inside a sandbox network namespace (scripts/sandbox.sh, name hsw-bench); the VMs are
# defined but never started, from an empty qcow2 base, so no guest boots.
# Usage: tests/bench/plan-200.sh [RUNS]      (default 5 plans each; needs terraform >= 1.4 on PATH)
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/../lib.sh" plan-200
runs=${1:-5}
n=200
sandbox_name=hsw-bench

tf_bin=$(find_terraform) || { echo "plan-200: no terraform on PATH (or HSW_TERRAFORM)" >&2; exit 2; }
require_root
require_tools jq qemu-img cargo
cargo_build release -p terraform-provider-hsw --bin terraform-provider-hsw
provider_bin="$bin_dir/terraform-provider-hsw"

work=$(mktemp -d /var/tmp/hsw-bench.XXXXXX)
cleanup() { set +e; sandbox stop >/dev/null 2>&1; rm -rf --one-file-system "$work"; }
on_exit cleanup
sandbox stop >/dev/null 2>&1 || true
uri=$(sandbox start)
pool=$(sandbox env POOL_DIR)

provider_mirror "$work" "$provider_bin"
mkdir -p "$work/hsw" "$work/data" "$pool/images"
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

tf() { sandbox_terraform "$work/cli.tfrc" "$tf_bin" "$@"; }
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

# Where the CPU goes, one plan each: Terraform with its provider processes (bash's `time` counts the children),
# the provider processes alone (a wrapper times each, reached through dev_overrides so the lock file's checksum
# is not involved), and the sandbox's libvirtd (from /proc).
mkdir -p "$work/wrap"
cat > "$work/wrap/terraform-provider-hsw" <<SH
#!/usr/bin/env bash
TIMEFORMAT='%U %S'
{ time "$mirror_bin" "\$@" 2>&3; } 3>&2 2>>"$work/provider-cpu"
SH
chmod +x "$work/wrap/terraform-provider-hsw"
printf 'provider_installation {\n  dev_overrides {\n    "hyperscaler/hsw" = "%s"\n  }\n  direct {}\n}\n' "$work/wrap" > "$work/dev.tfrc"
libvirtd_pid=$(tr -dc '0-9' < "$(sandbox env RUN_DIR)/libvirtd.pid")
libvirtd_ticks() { awk '{ print $14 + $15 }' "/proc/$libvirtd_pid/stat"; }
cpu_ms() {   # cpu_ms TFRC DIR: user+sys ms of terraform plan and its children (timed inside the netns)
  # shellcheck disable=SC2016  # the inner script's own arguments
  sandbox exec -- env TF_CLI_CONFIG_FILE="$1" CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1 TF_INPUT=0 bash -c \
    'TIMEFORMAT="%U %S"; { time "$0" -chdir="$1" plan -no-color >/dev/null 2>&1; } 2>&1' "$tf_bin" "$work/$2" |
    awk '{ printf "%d", ($1 + $2) * 1000 }'
}
data_cpu=$(cpu_ms "$work/cli.tfrc" data)
l0=$(libvirtd_ticks)
hsw_cpu=$(cpu_ms "$work/dev.tfrc" hsw)
l1=$(libvirtd_ticks)
prov_cpu=$(awk '{ s += $1 + $2 } END { printf "%d", s * 1000 }' "$work/provider-cpu")
tick=$(getconf CLK_TCK)
echo "CPU of one plan: terraform_data ${data_cpu} ms (Terraform); hsw_vm ${hsw_cpu} ms (Terraform and provider)," \
  "of which the provider's $(wc -l < "$work/provider-cpu") processes ${prov_cpu} ms; libvirtd $(( (l1 - l0) * 1000 / tick )) ms"
tf -chdir="$work/hsw" destroy -auto-approve -no-color -parallelism=10 >/dev/null
