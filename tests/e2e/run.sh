#!/usr/bin/env bash
# End-to-end test of terraform-provider-hsw: real Terraform, the real provider, a real libvirtd and TCG guests,
# all inside a sandbox network namespace (scripts/sandbox.sh). Fixtures: tests/e2e/terraform/.
#
# Usage: tests/e2e/run.sh [--keep] [--only primary|1.0]
#   --keep         on failure, leave the sandbox and the work directory for debugging (the paths are printed)
#   --only WHICH   run one Terraform only: `primary` (HSW_TERRAFORM or terraform on PATH) or `1.0` (1.0.3)
# Environment:
#   HSW_TERRAFORM, HSW_TERRAFORM_1_0   Terraform binaries (default: PATH; /opt/hsw/tools/terraform-1.0.3 from
#                                      scripts/install-tools.sh main, installed when missing)
#   HSW_REQUIRE_TERRAFORM=1            a missing Terraform is a failure, not a skip (CI)
#   HSW_PROVIDER_BIN                   the provider binary (default: cargo build, debug)
#   HSW_E2E_SANDBOX                    sandbox name (default hsw-e2e)
#   HSW_E2E_BOOT_TIMEOUT               seconds a guest may take to get its address / answer ssh (default 300)
#   HSW_E2E_FULL_ALL=1                 run every scenario on every Terraform (default: update-node and
#                                      sigkill, which boot a VM each, on the primary Terraform only)
#
# Scenarios (per Terraform; [full] = primary only unless HSW_E2E_FULL_ALL=1):
#   create        apply: two networks, a VM that boots and reports its DHCP address (output node_ip, checked
#                 with ssh from inside the netns), a VM defined but not running; then plan is empty
#   import        a fresh state imports everything (by name and by UUID); `terraform show -json` equals the
#                 created state's; plan is empty there too
#   update-idle   vcpu/memory of the stopped VM change in place (same UUID)
#   update-node   [full] vcpu/memory of the running VM change in place: shutdown, redefine, boot, address again
#   drift-delete  a VM and a network removed with virsh are recreated by the next apply
#   drift-stop    a VM stopped with virsh shows as a change; apply starts it again
#   sigkill       [full] the provider is killed (SIGKILL, by pid) while it waits for a new VM's address; the
#                 next apply converges, with no orphan domain, directory or DHCP reservation
#   destroy       nothing is left: no domain, network, disk, seed ISO or dnsmasq
# Needs root and `scripts/install-deps.sh full`. Guest traffic and Terraform itself stay inside the netns.
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/../lib.sh" e2e

fixtures="$root/tests/e2e/terraform"
sandbox_name="${HSW_E2E_SANDBOX:-hsw-e2e}"
boot_timeout="${HSW_E2E_BOOT_TIMEOUT:-300}"
full_all="${HSW_E2E_FULL_ALL:-0}"
keep=0
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=1; shift ;;
    --only) [ $# -ge 2 ] || usage_error "--only needs primary or 1.0"; only=$2; shift 2 ;;
    -h|--help) show_help 30; exit 0 ;;
    *) usage_error "unknown argument '$1' (see --help)" ;;
  esac
done
case "$only" in ""|primary|1.0) ;; *) usage_error "--only must be primary or 1.0" ;; esac
[[ "$boot_timeout" =~ ^[0-9]+$ ]] || usage_error "HSW_E2E_BOOT_TIMEOUT must be a number"

require_root
require_tools virsh jq ssh ssh-keygen ip cargo

# --- Terraform binaries ---
terraforms=()   # "label|path"
skip_or_fail() {
  if [ "${HSW_REQUIRE_TERRAFORM:-0}" = 1 ]; then fail "$1"; fi
  say "SKIPPED: $1"
}
if [ "$only" != 1.0 ]; then
  if tf_primary=$(find_terraform); then terraforms+=("primary|$tf_primary")
  else skip_or_fail "no Terraform on PATH (or HSW_TERRAFORM)"; fi
fi
if [ "$only" != primary ]; then
  tf_old="${HSW_TERRAFORM_1_0:-}"
  if [ -z "$tf_old" ]; then
    tf_old=$(find_tf103 || true)
    if [ -z "$tf_old" ]; then
      "$root/scripts/install-tools.sh" terraform >&2 || true
      tf_old=$(find_tf103 || true)
    fi
  fi
  if [ -n "$tf_old" ] && [ -x "$tf_old" ]; then terraforms+=("1.0|$tf_old")
  else skip_or_fail "no Terraform 1.0.3 (scripts/install-tools.sh main)"; fi
fi
[ ${#terraforms[@]} -gt 0 ] || { echo "e2e: no Terraform to run" >&2; exit 0; }

# --- provider, image ---
step "provider binary"
provider_bin="${HSW_PROVIDER_BIN:-}"
if [ -z "$provider_bin" ]; then
  cargo_build debug --workspace --bins
  provider_bin="$bin_dir/terraform-provider-hsw"
fi
[ -x "$provider_bin" ] || fail "no provider binary at $provider_bin"
info "$provider_bin"

step "guest image (built once, then cached)"
build_image --role hpc

# --- sandbox, work directory, cleanup ---
work=""
started=0
last_log=""
cleanup() {
  local rc=$?
  set +e
  if [ "$rc" -ne 0 ]; then
    echo "--- e2e failed (exit $rc)" >&2
    [ -n "$work" ] && [ -f "$work/logs/.last" ] && last_log=$(cat "$work/logs/.last")
    if [ -n "$last_log" ] && [ -f "$last_log" ]; then
      echo "--- $last_log (last 30 lines)" >&2; tail -n 30 "$last_log" >&2; echo >&2
      [ -s "$last_log.stderr" ] && { echo "--- $last_log.stderr (last 30 lines)" >&2; tail -n 30 "$last_log.stderr" >&2; }
    fi
    if [ "$started" = 1 ]; then
      echo "--- libvirtd log (last 15 lines)" >&2; tail -n 15 "$(sandbox env LOG)" >&2
    fi
  fi
  if [ "$rc" -ne 0 ] && [ "$keep" = 1 ]; then
    echo "e2e: --keep: sandbox '$sandbox_name' ($(sandbox env URI)) and $work left for debugging;" \
         "remove with: scripts/sandbox.sh --name $sandbox_name stop; rm -rf $work" >&2
  else
    [ "$started" = 1 ] && sandbox stop
    [ -n "$work" ] && rm -rf --one-file-system "$work"
  fi
  exit "$rc"
}
on_exit cleanup

step "sandbox '$sandbox_name'"
sandbox stop >/dev/null 2>&1 || true    # whatever a crashed earlier run left
started=1
uri=$(sandbox start)
pool=$(sandbox env POOL_DIR)
ns=$(sandbox env NETNS)
v() { timeout 60 virsh -q -c "$uri" "$@"; }

work=$(mktemp -d /var/tmp/hsw-e2e.XXXXXX)
mkdir -p "$work/logs"
provider_mirror "$work" "$provider_bin"
ssh-keygen -q -t ed25519 -N '' -C hsw-e2e -f "$work/id_ed25519"

# The provider only takes images inside its pool_dir: link (or copy) the cached image there.
mkdir -p "$pool/images"
for f in "$img_base:base.qcow2" "$img_kernel:vmlinuz" "$img_initrd:initrd.img"; do
  ln "${f%%:*}" "$pool/images/${f##*:}" 2>/dev/null || cp --reflink=auto "${f%%:*}" "$pool/images/${f##*:}"
done

# --- helpers ---
echo 0 > "$work/logs/.n"
# new_log LABEL: a fresh numbered log path in $last_log (also in logs/.last, since helpers run in $(...) too).
new_log() {
  local n
  n=$(( $(cat "$work/logs/.n") + 1 ))
  echo "$n" > "$work/logs/.n"
  last_log=$(printf '%s/logs/%03d-%s-%s.log' "$work" "$n" "$tf_label" "$1")
  echo "$last_log" > "$work/logs/.last"
}
# Terraform ($tf_bin) inside the sandbox, with a private CLI configuration and no registry.
tf_run() { sandbox_terraform "$work/cli.tfrc" "$tf_bin" "$@"; }
# tf LABEL DIR ARGS...: Terraform in DIR; stdout to $last_log, stderr to $last_log.stderr.
tf() {
  local label=$1 dir=$2; shift 2
  new_log "$label"
  tf_run -chdir="$dir" "$@" > "$last_log" 2> "$last_log.stderr"
}
tf_ok() { tf "$@" || fail "terraform ${3:-} failed (log $last_log)"; }

# new_dir NAME: a Terraform working directory with the fixtures and their variables, initialized; in $newdir.
newdir=""
new_dir() {
  local d="$work/$tf_label-$1"
  mkdir -p "$d"
  cp "$fixtures"/*.tf "$d"/
  jq -n --arg uri "$uri" --arg pool "$pool" --arg key "$(cat "$work/id_ed25519.pub")" \
        --argjson timeout "$boot_timeout" \
        '{uri: $uri, pool_dir: $pool, base_image: ($pool + "/images/base.qcow2"),
          kernel: ($pool + "/images/vmlinuz"), initrd: ($pool + "/images/initrd.img"),
          ssh_public_key: $key, boot_timeout: $timeout}' > "$d/terraform.tfvars.json"
  tf_ok init "$d" init -input=false -no-color
  newdir=$d
}

# set_var DIR NAME JSON: changes one variable of the configuration in DIR.
set_var() {
  jq --arg k "$2" --argjson v "$3" '.[$k] = $v' "$1/terraform.tfvars.json" > "$1/terraform.tfvars.json.new"
  mv "$1/terraform.tfvars.json.new" "$1/terraform.tfvars.json"
}

assert_plan_empty() {
  local rc=0
  tf plan "$1" plan -detailed-exitcode -input=false -no-color || rc=$?
  case "$rc" in
    0) info "plan is empty" ;;
    2) fail "plan is not empty after ${2:-apply} (log $last_log):$(grep -E '^  [#~+-]' "$last_log" | head -20)" ;;
    *) fail "terraform plan failed (log $last_log)" ;;
  esac
}

# plan_actions DIR: "address=action[,action]" for every change the plan would make, sorted.
plan_actions() {
  tf_ok plan "$1" plan -out="$1/e2e.tfplan" -input=false -no-color
  tf_ok show-plan "$1" show -json "$1/e2e.tfplan"
  jq -r '(.resource_changes // [])[] | select(.change.actions != ["no-op"]) | "\(.address)=\(.change.actions | join(","))"' \
    "$last_log" | sort
  rm -f "$1/e2e.tfplan"
}

expect_actions() {
  local got want=$2
  got=$(plan_actions "$1" | paste -sd' ' -)
  [ "$got" = "$want" ] || fail "plan should be '$want', is '${got:-nothing}'"
  info "plan: $got"
}

output() { tf_ok output "$1" output -raw "$2"; cat "$last_log"; }

state_values() {
  tf_ok show "$1" show -json -no-color
  jq -S '[.values.root_module.resources[] | {address, values}] | sort_by(.address)' "$last_log"
}

ssh_hostname() {   # ssh_hostname IP: the guest's hostname, retried until the boot timeout (then it fails)
  local ip=$1 t0 got
  t0=$(date +%s)
  while :; do
    got=$(ip netns exec "$ns" ssh -i "$work/id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
            -o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR "hsw@$ip" hostname 2>/dev/null || true)
    [ -n "$got" ] && { echo "$got"; return 0; }
    [ $(( $(date +%s) - t0 )) -lt "$boot_timeout" ] || fail "ssh hsw@$ip did not answer within ${boot_timeout} s"
    # The image's own hostname in the DHCP lease means cloud-init found no seed: ssh keys will never arrive.
    if [ $(( $(date +%s) - t0 )) -ge 60 ] && [ "$(lease_hostname "$ip")" = hsw-guest ]; then
      fail "hsw@$ip refuses the key and its DHCP lease names the image's default hostname 'hsw-guest': the guest" \
           "did not read its cloud-init seed (is the seed's device visible to the guest kernel?)"
    fi
    sleep 2
  done
}

lease_hostname() {  # lease_hostname IP: the hostname the guest sent with its DHCP request on hswe2e
  v net-dhcp-leases hswe2e | awk -v ip="$1" '{ for (i = 1; i < NF; i++) if ($i == "ipv4") {
    a = $(i + 1); sub(/\/.*/, "", a); if (a == ip) print $(i + 2) } }'
}

check_node() {     # check_node DIR: the node runs, reports its address and answers ssh with its hostname
  local dir=$1 ip got t0 want_ip
  [ "$(v domstate hsw-e2e-node)" = running ] || fail "hsw-e2e-node is not running"
  ip=$(output "$dir" node_ip)
  [[ "$ip" =~ ^192\.168\.150\.[0-9]+$ ]] || fail "node_ip '$ip' is not an address of 192.168.150.0/24"
  want_ip=$(jq -r '.node_ip // "192.168.150.50"' "$dir/terraform.tfvars.json")
  [ -z "$want_ip" ] || [ "$ip" = "$want_ip" ] || fail "node_ip is $ip, expected the reservation $want_ip"
  t0=$(date +%s)
  got=$(ssh_hostname "$ip") || exit 1   # ssh_hostname said why
  [ "$got" = hsw-e2e-node ] || fail "the node's hostname is '$got', expected hsw-e2e-node"
  info "node_ip $ip; ssh answered (hostname $got) $(( $(date +%s) - t0 )) s after apply returned"
}

dominfo_is() {   # dominfo_is DOMAIN VCPUS MAX_MEMORY_KIB
  local info cpus mem
  info=$(v dominfo "$1")
  cpus=$(awk -F': *' '$1 == "CPU(s)" { print $2 }' <<< "$info")
  mem=$(awk -F': *' '$1 == "Max memory" { print $2 }' <<< "$info")
  { [ "$cpus" = "$2" ] && [ "$mem" = "$3 KiB" ]; } || fail "$1 has $cpus vCPUs and $mem, expected $2 and $3 KiB"
}

domains() { v list --all --name | sort | paste -sd' ' -; }
vm_dirs() { find "$pool/vms" -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort | paste -sd' ' -; }
uuid_of() { v domuuid "$1"; }

check_nothing_left() {
  local left p
  left=$(domains); [ -z "$left" ] || fail "domains left: $left"
  left=$(v net-list --all --name | paste -sd' ' -); [ -z "$left" ] || fail "networks left: $left"
  left=$(vm_dirs); [ -z "$left" ] || fail "VM directories left in $pool/vms: $left"
  left=$(find "$pool" -mindepth 1 -not -path "$pool/images*" -not -path "$pool/vms" -printf '%P ' )
  [ -z "$left" ] || fail "files left in $pool: $left"
  left=$(find "$pool" -name '*.iso' -printf '%P ')
  [ -z "$left" ] || fail "seed ISOs left: $left"
  for p in $(ip netns pids "$ns"); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" != dnsmasq ] || fail "dnsmasq (pid $p) still running"
  done
  info "nothing left: no domain, network, VM directory, seed ISO or dnsmasq"
}

timings=()
scenario() {   # scenario NAME FUNCTION DIR
  local t0
  t0=$(date +%s)
  step "[$tf_label] $1"
  "$2" "$3"
  timings+=("$(printf '%-8s %-14s %4d s' "$tf_label" "$1" $(( $(date +%s) - t0 )))")
}

# --- scenarios ---
s_create() {
  local d=$1 t0
  t0=$(date +%s)
  info "booting hsw-e2e-node (TCG, 1 vCPU, 512 MiB) and defining hsw-e2e-idle; apply waits for the node's address"
  tf_ok apply "$d" apply -auto-approve -input=false -no-color
  info "apply took $(( $(date +%s) - t0 )) s (boot to DHCP address included)"
  [ "$(v domstate hsw-e2e-idle)" = "shut off" ] || fail "hsw-e2e-idle should be defined and not running"
  check_node "$d"
  assert_plan_empty "$d" create
}

s_import() {
  local d=$1 i idle_uuid a b got
  new_dir import
  i=$newdir
  idle_uuid=$(uuid_of hsw-e2e-idle)
  tf_ok import "$i" import -input=false -no-color hsw_network.e2e hswe2e
  tf_ok import "$i" import -input=false -no-color hsw_network.aux "$(v net-uuid hswe2eaux)"
  tf_ok import "$i" import -input=false -no-color hsw_vm.node hsw-e2e-node
  tf_ok import "$i" import -input=false -no-color hsw_vm.idle "$idle_uuid"
  info "imported: networks by name and UUID, VMs by name and UUID"
  a=$(state_values "$d")
  b=$(state_values "$i")
  if [ "$a" != "$b" ]; then
    diff -u <(echo "$a") <(echo "$b") | head -60 >&2 || true
    fail "terraform show -json differs between the created and the imported state (above: - created, + imported)"
  fi
  info "terraform show -json: created and imported states are equal"
  # Resource changes only: Terraform 1.0's import leaves outputs out of the state, so its plan adds them.
  got=$(plan_actions "$i" | paste -sd' ' -)
  [ -z "$got" ] || fail "plan after import would change resources: $got"
  info "plan after import changes no resource"
  rm -rf --one-file-system "$i"   # never destroy from here: the same objects belong to $d
}

s_update_idle() {
  local d=$1 before
  before=$(uuid_of hsw-e2e-idle)
  set_var "$d" idle_vcpu 2; set_var "$d" idle_memory 384
  expect_actions "$d" "hsw_vm.idle=update"
  tf_ok apply "$d" apply -auto-approve -input=false -no-color
  [ "$(uuid_of hsw-e2e-idle)" = "$before" ] || fail "hsw-e2e-idle was replaced, not updated"
  dominfo_is hsw-e2e-idle 2 393216
  info "hsw-e2e-idle: 2 vCPU, 384 MiB, same UUID"
  assert_plan_empty "$d" update
}

s_update_node() {
  local d=$1 before t0
  before=$(uuid_of hsw-e2e-node)
  set_var "$d" node_vcpu 2; set_var "$d" node_memory 768
  expect_actions "$d" "hsw_vm.node=update"
  t0=$(date +%s)
  info "hsw-e2e-node: shutdown, redefinition, boot (TCG) and address again"
  tf_ok apply "$d" apply -auto-approve -input=false -no-color
  info "apply took $(( $(date +%s) - t0 )) s"
  [ "$(uuid_of hsw-e2e-node)" = "$before" ] || fail "hsw-e2e-node was replaced, not updated"
  dominfo_is hsw-e2e-node 2 786432
  check_node "$d"
  assert_plan_empty "$d" update
}

s_drift_delete() {
  local d=$1
  v undefine hsw-e2e-idle >/dev/null
  v net-destroy hswe2eaux >/dev/null
  v net-undefine hswe2eaux >/dev/null
  info "removed with virsh: domain hsw-e2e-idle (its files stay), network hswe2eaux"
  expect_actions "$d" "hsw_network.aux=create hsw_vm.idle=create"
  tf_ok apply "$d" apply -auto-approve -input=false -no-color
  [ "$(v net-info hswe2eaux | awk -F': *' '$1 == "Active" { print $2 }')" = yes ] \
    || fail "hswe2eaux was not recreated and started"
  [ "$(v domstate hsw-e2e-idle)" = "shut off" ] || fail "hsw-e2e-idle was not recreated"
  info "recreated: hswe2eaux, hsw-e2e-idle"
  assert_plan_empty "$d" "the drift apply"
}

s_drift_stop() {
  local d=$1 t0
  v destroy hsw-e2e-node >/dev/null
  info "hsw-e2e-node powered off with virsh destroy"
  expect_actions "$d" "hsw_vm.node=update"
  t0=$(date +%s)
  tf_ok apply "$d" apply -auto-approve -input=false -no-color
  info "apply (boot to address) took $(( $(date +%s) - t0 )) s"
  check_node "$d"
  assert_plan_empty "$d" "the drift apply"
}

descendants() {  # every descendant pid of $1
  local c
  for c in $(pgrep -P "$1" || true); do echo "$c"; descendants "$c"; done
}

s_sigkill() {
  local d=$1 tf_pid prov="" p i rc=0 t0 hosts bg_log
  set_var "$d" with_kill_vm true
  new_log apply-killed
  bg_log=$last_log
  tf_run -chdir="$d" apply -auto-approve -input=false -no-color > "$bg_log" 2> "$bg_log.stderr" &
  tf_pid=$!
  info "apply started (pid $tf_pid); waiting for hsw-e2e-kill to run, then killing the provider mid-create"
  for i in $(seq 1 240); do
    [ "$(v domstate hsw-e2e-kill 2>/dev/null)" = running ] && break
    kill -0 "$tf_pid" 2>/dev/null || { last_log=$bg_log; fail "apply ended before hsw-e2e-kill ran"; }
    sleep 0.5
  done
  sleep 3   # now in the wait for the address; the domain is still marked incomplete
  for p in $(descendants "$tf_pid"); do
    [ "$(basename "$(readlink "/proc/$p/exe" 2>/dev/null)")" = terraform-provider-hsw ] && prov=$p
  done
  [ -n "$prov" ] || { last_log=$bg_log; fail "no terraform-provider-hsw process under Terraform (pid $tf_pid)"; }
  kill -KILL "$prov"
  wait "$tf_pid" || rc=$?
  [ "$rc" -ne 0 ] || { last_log=$bg_log; fail "apply succeeded although its provider was killed"; }
  info "provider pid $prov killed; apply exited $rc; domains now: $(domains)"
  t0=$(date +%s)
  tf_ok apply "$d" apply -auto-approve -input=false -no-color
  info "second apply converged in $(( $(date +%s) - t0 )) s (boot included)"
  [ "$(domains)" = "hsw-e2e-idle hsw-e2e-kill hsw-e2e-node" ] || fail "domains after the re-apply: $(domains)"
  [ "$(vm_dirs)" = "hsw-e2e-idle hsw-e2e-kill hsw-e2e-node" ] || fail "VM directories after the re-apply: $(vm_dirs)"
  hosts=$(v net-dumpxml hswe2eaux | grep -c '<host ' || true)
  [ "$hosts" = 0 ] || fail "hswe2eaux has $hosts DHCP reservations, expected none"
  assert_plan_empty "$d" "the re-apply"
  set_var "$d" with_kill_vm false
  expect_actions "$d" "hsw_vm.kill[0]=delete"
  tf_ok apply "$d" apply -auto-approve -input=false -no-color
  [ "$(domains)" = "hsw-e2e-idle hsw-e2e-node" ] || fail "domains after removing the kill VM: $(domains)"
  [ "$(vm_dirs)" = "hsw-e2e-idle hsw-e2e-node" ] || fail "VM directories after removing the kill VM: $(vm_dirs)"
  info "no orphan: domains, directories and reservations are exactly the configuration's"
}

s_destroy() {
  local d=$1 hosts
  hosts=$(v net-dumpxml hswe2e | grep -c '<host ' || true)
  info "hswe2e has $hosts DHCP reservations before destroy (static-host and the node's)"
  tf_ok destroy "$d" destroy -auto-approve -input=false -no-color
  check_nothing_left
}

for entry in "${terraforms[@]}"; do
  tf_label=${entry%%|*}
  tf_bin=${entry#*|}
  step "Terraform $tf_label: $("$tf_bin" version 2>/dev/null | head -n1) ($tf_bin)"
  full=0
  if [ "$tf_label" = primary ] || [ "$full_all" = 1 ]; then full=1; fi
  new_dir main
  dir=$newdir
  scenario create s_create "$dir"
  scenario import s_import "$dir"
  scenario update-idle s_update_idle "$dir"
  if [ "$full" = 1 ]; then scenario update-node s_update_node "$dir"; fi
  scenario drift-delete s_drift_delete "$dir"
  scenario drift-stop s_drift_stop "$dir"
  if [ "$full" = 1 ]; then scenario sigkill s_sigkill "$dir"; fi
  scenario destroy s_destroy "$dir"
  rm -rf --one-file-system "$dir"
done

step "PASSED in $(( $(date +%s) - t_all )) s"
printf '    %s\n' "${timings[@]}" >&2
