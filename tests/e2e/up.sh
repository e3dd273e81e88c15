#!/usr/bin/env bash
# End-to-end test of `hsw-cli up` and `hsw-cli down` on the embedded default config (examples/minimal-dev.yaml):
# 1 Slurm controller + 2 compute nodes (simulated MIG slices), 1 Kubernetes control plane + 1 GPU worker, all
# inside a sandbox network namespace (scripts/sandbox.sh).
#
# Usage: tests/e2e/up.sh [--keep]
#   --keep   on failure, leave the sandbox and the work directory for debugging (the paths are printed)
# Environment:
#   HSW_UP_E2E_SANDBOX   sandbox name (default hsw-up-e2e; never hsw-e2e, which tests/e2e/run.sh uses)
#   HSW_CLI_BIN          a built hsw-cli (default: cargo build, debug; the provider is built too)
#
# What it checks:
#   up (from a clean state)   exits 0; every VM answers ssh with its own hostname (from inside the netns);
#                             `sinfo` on the controller shows both compute nodes idle; `srun -N2 hostname` prints
#                             both compute hostnames; the GPU nodes carry their simulated MIG slice in the
#                             Terraform output, the inventory and the controller's /etc/slurm/gres.conf
#   up again                  exits 0; the Terraform plan is empty and the playbook's PLAY RECAP says changed=0
#                             on every host
#   down                      exits 0; no domain, network or VM disk after destroy; no netns, libvirtd or
#                             sandbox directory after it
# Needs root and `scripts/install-deps.sh full`. Every packet stays inside the sandbox's netns.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
name="${HSW_UP_E2E_SANDBOX:-hsw-up-e2e}"
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "up.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ "$name" != hsw-e2e ] || { echo "up.sh: the sandbox hsw-e2e belongs to tests/e2e/run.sh" >&2; exit 2; }

t_all=$(date +%s)
step() { printf '\n==> [up.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
info() { printf '    %s\n' "$*" >&2; }
fail() { printf 'up.sh: FAILED: %s\n' "$*" >&2; exit 1; }
timings=()
timed() {  # timed LABEL SECONDS
  timings+=("$(printf '%-22s %4d s' "$1" "$2")")
}

[ "$(id -u)" -eq 0 ] || fail "run as root (network namespaces, libvirtd)"
for tool in virsh jq ssh ip cargo python3; do
  command -v "$tool" >/dev/null 2>&1 || fail "'$tool' is missing: run scripts/install-deps.sh full"
done

step "build hsw-cli and terraform-provider-hsw"
t0=$(date +%s)
cli="${HSW_CLI_BIN:-}"
if [ -z "$cli" ]; then
  (cd "$root" && cargo build --locked -p hsw-cli -p terraform-provider-hsw) >&2
  target_dir=$(cd "$root" && cargo metadata --no-deps --format-version 1 | jq -r .target_directory)
  cli="$target_dir/debug/hsw-cli"
  export HSW_PROVIDER_BIN="$target_dir/debug/terraform-provider-hsw"
fi
[ -x "$cli" ] || fail "no hsw-cli at $cli"
timed build $(( $(date +%s) - t0 ))

work=$(mktemp -d /var/tmp/hsw-up-e2e.XXXXXX)
state="$work/state"
hsw() { (cd "$root" && "$cli" "$@" --sandbox-name "$name" --state-dir "$state"); }

on_exit() {
  local rc=$?
  set +e
  if [ "$rc" -ne 0 ] && [ "$keep" = 1 ]; then
    echo "up.sh: --keep: sandbox '$name' and $work left; remove with:" \
         "$cli down --sandbox-name $name --state-dir $state; rm -rf $work" >&2
  else
    if [ -e "/run/netns/$name" ] || [ -e "/var/lib/hsw-sandbox/$name" ]; then
      (cd "$root" && "$cli" down --sandbox-name "$name" --state-dir "$state") >/dev/null 2>&1 \
        || "$root/scripts/sandbox.sh" --name "$name" stop
    fi
    rm -rf --one-file-system "$work"
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

step "clean state: sandbox '$name' stopped, fresh state directory $state"
"$root/scripts/sandbox.sh" --name "$name" stop >/dev/null 2>&1 || true

# --- first up ---
step "hsw-cli up (first run: boots 5 VMs, runs the HPC playbook)"
t0=$(date +%s)
hsw up 2>&1 | tee "$work/up1.log" >&2 || fail "hsw-cli up failed (log above)"
timed "up (first)" $(( $(date +%s) - t0 ))

tfout="$state/terraform-output.json"
[ -f "$tfout" ] || fail "no $tfout"
inv="$state/ansible/inventory.yml"
[ -f "$inv" ] || fail "no inventory $inv"
key_hpc="$state/ssh/hpc/id_ed25519"
key_cloud="$state/ssh/cloud/id_ed25519"
ns_ssh() {  # ns_ssh KEY IP CMD...: ssh from inside the sandbox's netns
  local key=$1 ip=$2; shift 2
  ip netns exec "$name" ssh -n -i "$key" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o ConnectTimeout=10 -o LogLevel=ERROR "hsw@$ip" -- "$@"
}

step "every VM answers ssh with its hostname"
t0=$(date +%s)
n=0
while IFS=$'\t' read -r cluster vm ip; do
  key=$key_hpc; [ "$cluster" = cloud ] && key=$key_cloud
  got=$(ns_ssh "$key" "$ip" hostname) || fail "ssh hsw@$ip ($vm) failed"
  [ "$got" = "$vm" ] || fail "ssh hsw@$ip answered hostname '$got', expected $vm"
  info "$vm ($ip): ssh ok"
  n=$((n + 1))
done < <(jq -r '.hsw_inventory.value.clusters | to_entries[] | .key as $c | .value[] | [$c, .name, .ip] | @tsv' "$tfout")
[ "$n" = 5 ] || fail "the Terraform output lists $n VMs, expected 5"
timed "ssh checks" $(( $(date +%s) - t0 ))

ctl_ip=$(jq -r '.hsw_inventory.value.clusters.hpc[] | select(.role == "controller") | .ip' "$tfout")
mapfile -t computes < <(jq -r '.hsw_inventory.value.clusters.hpc[] | select(.role == "compute") | .name' "$tfout" | sort)
[ "${#computes[@]}" = 2 ] || fail "expected 2 compute nodes, the output lists ${#computes[@]}"

step "Slurm: sinfo idle, srun -N2 hostname"
t0=$(date +%s)
sinfo=$(ns_ssh "$key_hpc" "$ctl_ip" sinfo -h -N -o "'%N %t'") || fail "sinfo failed on the controller"
for c in "${computes[@]}"; do
  grep -qx "$c idle" <<< "$sinfo" || fail "sinfo does not show $c idle: $(tr '\n' ',' <<< "$sinfo")"
done
info "sinfo: $(tr '\n' ',' <<< "$sinfo" | sed 's/,$//')"
srun=$(ns_ssh "$key_hpc" "$ctl_ip" timeout 120 srun -N2 -t 2 hostname | sort | paste -sd' ' -) \
  || fail "srun -N2 hostname failed"
[ "$srun" = "${computes[*]}" ] || fail "srun -N2 hostname printed '$srun', expected '${computes[*]}'"
info "srun -N2 hostname: $srun"
timed "slurm checks" $(( $(date +%s) - t0 ))

step "GPU nodes carry their simulated MIG slices (Terraform output, inventory, gres.conf)"
gres=$(ns_ssh "$key_hpc" "$ctl_ip" cat /etc/slurm/gres.conf) || fail "cannot read gres.conf on the controller"
while IFS=$'\t' read -r vm profile; do
  { [ -n "$profile" ] && [ "$profile" != null ]; } || fail "$vm has no MIG profile in the Terraform output"
  python3 - "$inv" "$vm" "$profile" <<'EOF' || fail "the inventory does not give $vm its MIG slice $profile"
import sys, yaml
inv, vm, profile = sys.argv[1:]
doc = yaml.safe_load(open(inv))
def find(node):
    if isinstance(node, dict):
        hosts = node.get("hosts") or {}
        if vm in hosts:
            return hosts[vm]
        for v in node.values():
            r = find(v)
            if r is not None:
                return r
    return None
h = find(doc) or {}
units = h.get("gpu_units") or []
sys.exit(0 if any(u.get("kind") == "mig" and u.get("profile") == profile for u in units) else 1)
EOF
  info "$vm: MIG $profile in the Terraform output and the inventory"
  if jq -e --arg vm "$vm" '.hsw_inventory.value.clusters.hpc[] | select(.name == $vm)' "$tfout" >/dev/null; then
    grep -q "^NodeName=$vm Name=gpu Type=$profile " <<< "$gres" || fail "gres.conf has no MIG $profile line for $vm"
    info "$vm: gres.conf has Type=$profile"
  fi
done < <(jq -r '.hsw_inventory.value.clusters[][] | select((.gpu_units // []) | length > 0)
                | [.name, (.gpu_units[0].profile // "null")] | @tsv' "$tfout")

# --- second up: nothing changes ---
step "hsw-cli up again: nothing may change"
t0=$(date +%s)
hsw up --skip-check 2>&1 | tee "$work/up2.log" >&2 || fail "the second hsw-cli up failed"
grep -q "terraform plan: no changes" "$work/up2.log" || fail "the second up's Terraform plan was not empty"
recap=$(sed -n '/^PLAY RECAP/,$p' "$work/up2.log" | grep ' : ok=')
[ -n "$recap" ] || fail "no PLAY RECAP in the second up's output"
if grep -v ' changed=0 ' <<< "$recap" >&2; then fail "the second playbook run changed something (above)"; fi
info "terraform plan empty; PLAY RECAP changed=0 on $(wc -l <<< "$recap") hosts"
timed "up (second)" $(( $(date +%s) - t0 ))

# --- down ---
step "hsw-cli down: nothing may be left"
t0=$(date +%s)
hsw down 2>&1 | tee "$work/down.log" >&2 || fail "hsw-cli down failed"
grep -q "after destroy: no domain, network or VM disk" "$work/down.log" || fail "down left libvirt objects"
[ ! -e "/run/netns/$name" ] || fail "netns $name is still there"
! ip netns list | awk '{print $1}' | grep -qx "$name" || fail "ip netns lists $name"
for d in "/run/hsw-sandbox/$name" "/var/lib/hsw-sandbox/$name"; do
  [ ! -e "$d" ] || fail "$d is still there"
done
rc=0; "$root/scripts/sandbox.sh" --name "$name" status >/dev/null || rc=$?
[ "$rc" = 3 ] || fail "scripts/sandbox.sh status says something is left (exit $rc)"
info "nothing left: no domain, network, VM disk, netns, libvirtd or sandbox directory"
timed down $(( $(date +%s) - t0 ))

step "PASSED in $(( $(date +%s) - t_all )) s"
printf '    %s\n' "${timings[@]}" >&2
