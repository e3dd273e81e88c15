#!/usr/bin/env bash
# End-to-end test of `hsw-cli up` (HPC and platform) and `hsw-cli down` on the default config
# (examples/minimal-dev.yaml, with its two networks in libvirt's `route` mode instead of `isolated`, so that
# packets can cross from one cluster to the other and the nftables segmentation is what stops them):
# 1 Slurm controller + 2 compute nodes (simulated MIG slices), 1 Kubernetes control plane + 1 GPU worker, all
# inside a sandbox network namespace (scripts/sandbox.sh). The HPC VMs boot the hpc image, the cloud VMs the
# cloud image (scripts/build-image.sh --role, package sets from packer/packages/).
#
# Usage: tests/e2e/up.sh [--keep]
#   --keep   on failure, leave the sandbox and the work directory for debugging (the paths are printed)
# Environment:
#   HSW_UP_E2E_SANDBOX   sandbox name (default hsw-up-e2e; never hsw-e2e, which tests/e2e/run.sh uses)
#   HSW_CLI_BIN          a built hsw-cli (default: cargo build, debug; the provider is built too)
#
# What it checks:
#   up --hpc-only (clean)     exits 0 and says it left the platform out; every VM answers ssh with its own hostname
#                             (from inside the netns); `sinfo` on the controller shows both compute nodes idle;
#                             `srun -N2 hostname` prints both compute hostnames; the controller's NFS server offers no
#                             NFSv3 and a compute node has /home over NFS 4.2; the GPU nodes carry their simulated MIG
#                             slice in the Terraform output, the inventory and the controller's /etc/slurm/gres.conf
#   grow to 3, shrink to 2    (--hpc-only, before the platform: Kubernetes idle on a 2-core TCG host would
#                             slow them) with a job running on a node that stays: `up` with 3 compute nodes (3 MIG
#                             slices) adds exactly one domain, the five VMs keep their uuids, sinfo lists the 3
#                             nodes (the new one idle) and srun runs on it; then `up` with 2 drains the new node
#                             while a 40 s job runs there (sacct: COMPLETED), destroys its VM and volumes, and
#                             sinfo lists exactly the 2 nodes, all idle; the long job survived both. Before the
#                             shrink `up` took its snapshot (--snapshot-dir): one backup holding the removed VM and
#                             the 3-node config, which `backup verify` accepts
#   up (the platform)         segmentation baseline first: an HPC VM reaches a cloud VM's port 22 (no policy yet).
#                             Then `up` without --hpc-only: the plan is empty, the platform playbooks run offline
#                             (--skip-tags online, hsw_offline=true, the summary says what was skipped) and change
#                             something; platform-vars.json carries cluster.yaml's values and where the services run;
#                             up verified (its summary lines): containerd on both cloud VMs, PostgreSQL, Prometheus
#                             Kubernetes from the offline bundle (both nodes Ready, CoreDNS answering in a pod on the
#                             GPU worker, that pod fetching a page from a pod on the control plane), scraping all 5
#                             node exporters (the HPC ones across the boundary), the segmentation (the HPC VM reaches
#                             no cloud VM on 22, 9100 or 10250, only the monitoring server scrapes across), sshd keys
#                             only on all 5. Every pod's image is the bundle's, the GPU worker is labelled
#                             compute=gpu; kubeadm init's and each node's time to Ready are reported. Then what up
#                             leaves out: TCP + scram as mlflow into its database, the drop rule counted packets, a
#                             password login is refused on every VM (the server offers only publickey; the askpass
#                             helper is never asked). MLflow (a systemd unit from the cloud image's venv; up
#                             verified /health, 401 without credentials, the Default experiment for the admin) as a
#                             user reaches it from the GPU worker: an experiment, a run with a metric, an artifact
#                             through the server and back (and on its disk), 401 without credentials, no HPC access
#   status                    `hsw-cli status --format json` exits 0: 5 VMs running at their planned addresses
#                             with the GPU units of `gpu plan`, both compute nodes idle, both cloud VMs Ready on
#                             Kubernetes, every promised service (the kubelet too) active; with a compute node's
#                             exporter stopped it exits 1 and names it in one `down:` line; started again, exit 0
#   backup, restore           tests/e2e/backup.sh (see its header): a job, a file and a row; backup, verify, down,
#                             restore from the backup alone; the same host keys, the job, the file and the row; an
#                             empty plan; a damaged backup refused naming the piece
#   up again                  on the restored deployment, its VMs rebooted from the restored disks (--no-verify: the
#                             platform run verified, backup.sh the restore) exits 0; the Terraform plan is empty and
#                             both the HPC and the platform playbooks' PLAY RECAPs say changed=0 on every host (what
#                             the playbooks wrote survives a reboot and a restore); a change is named by its task and host
#   down                      (of the restored deployment) exits 0; no domain, network or VM disk after destroy; no
#                             netns, libvirtd or sandbox directory after it
# Needs root and `scripts/install-deps.sh full`. Every packet stays inside the sandbox's netns.
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/../lib.sh" up.sh

sandbox_name="${HSW_UP_E2E_SANDBOX:-hsw-up-e2e}"
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=1; shift ;;
    -h|--help) show_help 59; exit 0 ;;
    *) usage_error "unknown argument '$1' (see --help)" ;;
  esac
done
[ "$sandbox_name" != hsw-e2e ] || usage_error "the sandbox hsw-e2e belongs to tests/e2e/run.sh"

timings=()
timed() {  # timed LABEL SECONDS
  timings+=("$(printf '%-22s %4d s' "$1" "$2")")
}

require_root
require_tools virsh jq ssh ip cargo python3

step "build hsw-cli and terraform-provider-hsw"
t0=$(date +%s)
cli="${HSW_CLI_BIN:-}"
if [ -z "$cli" ]; then
  cargo_build debug --workspace --bins
  cli="$bin_dir/hsw-cli"
  export HSW_PROVIDER_BIN="$bin_dir/terraform-provider-hsw"
fi
[ -x "$cli" ] || fail "no hsw-cli at $cli"
timed build $(( $(date +%s) - t0 ))

work=$(mktemp -d /var/tmp/hsw-up-e2e.XXXXXX)
state="$work/state"
# The default cluster with routed networks (see the top).
config="$work/cluster.yaml"
sed 's/^\(      bridge: hswbr-.*\)$/\1\n      mode: route/' "$root/examples/minimal-dev.yaml" > "$config"
[ "$(grep -c '^      mode: route$' "$config")" = 2 ] || fail "could not set both networks of minimal-dev.yaml to route mode"
hsw() { (cd "$root" && "$cli" "$@" --config "${config_now:-$config}" --sandbox-name "$sandbox_name" --state-dir "$state"); }

cleanup() {
  local rc=$?
  set +e
  if [ "$rc" -ne 0 ] && [ "$keep" = 1 ]; then
    echo "up.sh: --keep: sandbox '$sandbox_name' and $work left; remove with:" \
         "$cli down --config $config --sandbox-name $sandbox_name --state-dir $state; rm -rf $work" >&2
  else
    if [ -e "/run/netns/$sandbox_name" ] || [ -e "/var/lib/hsw-sandbox/$sandbox_name" ]; then
      (cd "$root" && "$cli" down --config "$config" --sandbox-name "$sandbox_name" --state-dir "$state") >/dev/null 2>&1 \
        || sandbox stop
    fi
    rm -rf --one-file-system "$work" "/var/backups/hsw/$sandbox_name"
  fi
  exit "$rc"
}
on_exit cleanup

step "clean state: sandbox '$sandbox_name' stopped, fresh state directory $state"
sandbox stop >/dev/null 2>&1 || true

# --- first up ---
step "hsw-cli up --hpc-only (first run: boots 5 VMs, runs the HPC playbook; the platform comes later, after the baseline)"
t0=$(date +%s)
hsw up --hpc-only 2>&1 | tee "$work/up1.log" >&2 || fail "hsw-cli up failed (log above)"
grep -q '^hsw: platform: not configured (--hpc-only)$' "$work/up1.log" || fail "up --hpc-only does not say it left the platform out"
timed "up (first)" $(( $(date +%s) - t0 ))

tfout="$state/terraform-output.json"
[ -f "$tfout" ] || fail "no $tfout"
inv="$state/ansible/inventory.yml"
[ -f "$inv" ] || fail "no inventory $inv"
key_hpc="$state/ssh/hpc/id_ed25519"
key_cloud="$state/ssh/cloud/id_ed25519"
ns_ssh() {  # ns_ssh KEY IP CMD...: ssh from inside the sandbox's netns
  local key=$1 ip=$2; shift 2
  ip netns exec "$sandbox_name" ssh -n -i "$key" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
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

step "NFS: the controller answers NFSv4 only; a compute node has /home over NFS 4.2"
vers=$(ns_ssh "$key_hpc" "$ctl_ip" sudo cat /proc/fs/nfsd/versions) || fail "cannot read /proc/fs/nfsd/versions on the controller"
{ tr ' ' '\n' <<< "$vers" | grep -qx -- -3 && tr ' ' '\n' <<< "$vers" | grep -qx -- +4.2; } \
  || fail "the controller's NFS server offers '$vers': expected -3 (no NFSv3) and +4.2"
c1_ip=$(jq -r --arg n "${computes[0]}" '.hsw_inventory.value.clusters.hpc[] | select(.name == $n) | .ip' "$tfout")
mnt=$(ns_ssh "$key_hpc" "$c1_ip" "ls /home >/dev/null && findmnt -n -t nfs4 -o SOURCE,OPTIONS /home") \
  || fail "/home on ${computes[0]} is not an NFSv4 mount"
grep -q 'vers=4.2' <<< "$mnt" || fail "/home on ${computes[0]} is mounted '$mnt', expected vers=4.2"
info "nfsd versions: $vers; ${computes[0]}: /home from ${mnt%% *} (vers=4.2)"

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
    # A job asking for that profile lands on a node holding it and gets the unit (Slurm sets CUDA_VISIBLE_DEVICES).
    job=$(ns_ssh "$key_hpc" "$ctl_ip" timeout 120 srun -t 2 --gres="gpu:$profile:1" -w "$vm" \
            printenv SLURMD_NODENAME CUDA_VISIBLE_DEVICES) || fail "srun --gres=gpu:$profile:1 -w $vm failed"
    { [ "$(sed -n 1p <<< "$job")" = "$vm" ] && [ -n "$(sed -n 2p <<< "$job")" ]; } \
      || fail "srun --gres=gpu:$profile:1 on $vm printed '$(tr '\n' ' ' <<< "$job")': expected the node name and CUDA_VISIBLE_DEVICES"
    info "$vm: srun --gres=gpu:$profile:1 ran there with CUDA_VISIBLE_DEVICES=$(sed -n 2p <<< "$job")"
  fi
done < <(jq -r '.hsw_inventory.value.clusters[][] | select((.gpu_units // []) | length > 0)
                | [.name, (.gpu_units[0].profile // "null")] | @tsv' "$tfout")

# --- the compute group grows from 2 to 3 and shrinks back to 2 ---
uri=$(sandbox env URI)
domains() { timeout 60 virsh -q -c "$uri" list --all --name | sed '/^$/d' | sort | paste -sd' ' -; }
vols() {  # every volume of every pool
  local p
  for p in $(timeout 60 virsh -q -c "$uri" pool-list --all --name); do
    timeout 60 virsh -q -c "$uri" vol-list --pool "$p" | awk '{print $1}'
  done | sort | paste -sd' ' -
}
uuids() { local d; for d in $(domains); do printf '%s=%s ' "$d" "$(timeout 60 virsh -q -c "$uri" domuuid "$d")"; done; }
slurm_nodes() {  # the nodes sinfo lists, each once, with its state
  ns_ssh "$key_hpc" "$ctl_ip" sinfo -h -N -o "'%N %t'" | sort -u
}
job_state() { ns_ssh "$key_hpc" "$ctl_ip" squeue -h -j "$1" -o %T 2>/dev/null; }

step "grow the compute group from 2 to 3: only the new VM is added, Slurm takes it in, a running job goes on"
t0=$(date +%s)
config3="$work/cluster-3.yaml"
sed -e 's/^      count: 2$/      count: 3/' -e 's/^\(      ip_range: 192\.168\.100\.11-\)12$/\113/' \
    -e 's/^      hpc: 2$/      hpc: 3/' "$config" > "$config3"
[ "$(diff "$config" "$config3" | grep -c '^>')" = 3 ] || fail "could not raise the compute count in $config3"
before_domains=$(domains)
before_uuids=$(uuids)
# A job that runs through the growth and the shrink (on a node that stays); Slurm must not disturb it.
long=$(ns_ssh "$key_hpc" "$ctl_ip" sbatch --parsable -t 30 -w "${computes[0]}" -o /dev/null --wrap "'sleep 1500'") \
  || fail "sbatch of the long job failed"
for _ in $(seq 30); do [ "$(job_state "$long")" = RUNNING ] && break; sleep 2; done
[ "$(job_state "$long")" = RUNNING ] || fail "job $long is not RUNNING before the growth: $(job_state "$long")"
info "job $long runs on ${computes[0]} (sleep 1500)"
config_now=$config3 hsw up --skip-check --no-verify --hpc-only 2>&1 | tee "$work/up-grow.log" >&2 || fail "up with 3 compute nodes failed"
grep -Eq 'Apply complete! Resources: [0-9]+ added, [0-9]+ changed, [0-9]+ destroyed' "$work/up-grow.log" \
  || fail "no Terraform apply summary in the growth's output"
new_vm=hsw-dev-compute-3
[ "$(domains)" = "$(tr ' ' '\n' <<< "$before_domains $new_vm" | sort | paste -sd' ' -)" ] \
  || fail "after the growth libvirt has '$(domains)', expected '$before_domains' and $new_vm"
for kv in $before_uuids; do
  grep -qw -- "$kv" <<< "$(uuids)" || fail "the growth replaced a VM that stays: ${kv%%=*} (uuid was ${kv#*=})"
done
info "libvirt: $(domains) (the five VMs kept their uuids)"
nodes=$(slurm_nodes) || fail "sinfo failed after the growth"
[ "$(awk '{print $1}' <<< "$nodes" | paste -sd' ' -)" = "${computes[*]} $new_vm" ] \
  || fail "after the growth sinfo lists '$(tr '\n' ',' <<< "$nodes")', expected ${computes[*]} $new_vm"
grep -qx "$new_vm idle" <<< "$nodes" || fail "$new_vm is not idle after the growth: $(tr '\n' ',' <<< "$nodes")"
[ "$(job_state "$long")" = RUNNING ] || fail "job $long did not survive the growth: '$(job_state "$long")'"
srun=$(ns_ssh "$key_hpc" "$ctl_ip" timeout 120 srun -N1 -w "$new_vm" -t 2 hostname) || fail "srun on $new_vm failed"
[ "$srun" = "$new_vm" ] || fail "srun -w $new_vm printed '$srun'"
info "sinfo: $(tr '\n' ',' <<< "$nodes" | sed 's/,$//'); srun on $new_vm ok; job $long still RUNNING"
timed "grow to 3" $(( $(date +%s) - t0 ))

step "shrink it back to 2: up drains $new_vm (its job finishes), removes it from Slurm, destroys the VM"
t0=$(date +%s)
short=$(ns_ssh "$key_hpc" "$ctl_ip" sbatch --parsable -t 5 -w "$new_vm" -o /dev/null --wrap "'sleep 40'") \
  || fail "sbatch on $new_vm failed"
for _ in $(seq 30); do [ "$(job_state "$short")" = RUNNING ] && break; sleep 2; done
[ "$(job_state "$short")" = RUNNING ] || fail "job $short is not RUNNING on $new_vm before the shrink"
hsw up --skip-check --no-verify --hpc-only --drain-timeout 300 --snapshot-dir "$work/pre-change" 2>&1 \
  | tee "$work/up-shrink.log" >&2 || fail "up back to 2 compute nodes failed"
grep -q "draining $new_vm in Slurm" "$work/up-shrink.log" || fail "up did not drain $new_vm before removing it"
# The snapshot before the change: the deployment as it was (3 compute nodes, the root and config of then),
# taken before the drain; it verifies.
grep -q "the plan destroys $new_vm: a snapshot of the deployment first" "$work/up-shrink.log" \
  || fail "up did not snapshot the deployment before destroying $new_vm"
snap=$(find "$work/pre-change" -mindepth 1 -maxdepth 1 -type d -name '2*')
{ [ -n "$snap" ] && [ "$(wc -l <<< "$snap")" = 1 ]; } || fail "expected one snapshot in $work/pre-change, found '$snap'"
jq -e --arg vm "$new_vm" '[.domains[].name] | index($vm)' "$snap/manifest.json" >/dev/null \
  || fail "the snapshot does not hold $new_vm"
cmp -s "$snap/config/cluster.yaml" "$config3" || fail "the snapshot's config is not the one it was made from (3 compute nodes)"
"$cli" backup verify "$snap" >/dev/null || fail "the snapshot before the shrink does not verify"
info "snapshot before the shrink: $snap ($(du -sh "$snap" | cut -f1)), holds $new_vm, verifies"
st=$(ns_ssh "$key_hpc" "$ctl_ip" sacct -n -X -P -j "$short" -o State) || fail "sacct -j $short failed"
[ "$st" = COMPLETED ] || fail "job $short on the removed node ended '$st', expected COMPLETED (the drain let it finish)"
[ "$(domains)" = "$before_domains" ] || fail "after the shrink libvirt has '$(domains)', expected '$before_domains'"
for kv in $before_uuids; do
  grep -qw -- "$kv" <<< "$(uuids)" || fail "the shrink replaced a VM that stays: ${kv%%=*}"
done
if grep -q -- "$new_vm" <<< "$(vols)"; then fail "a volume of $new_vm is left: $(vols)"; fi
[ "$(job_state "$long")" = RUNNING ] || fail "job $long did not survive the shrink: '$(job_state "$long")'"
ns_ssh "$key_hpc" "$ctl_ip" scancel "$long" || fail "scancel $long failed"
for _ in $(seq 30); do [ -z "$(job_state "$long")" ] && break; sleep 2; done
nodes=$(slurm_nodes) || fail "sinfo failed after the shrink"
[ "$nodes" = "$(printf '%s idle\n' "${computes[@]}")" ] \
  || fail "after the shrink sinfo lists '$(tr '\n' ',' <<< "$nodes")', expected ${computes[*]}, all idle"
info "job $short on $new_vm COMPLETED before its VM went; libvirt: $(domains); sinfo: $(tr '\n' ',' <<< "$nodes" | sed 's/,$//')"
timed "shrink to 2" $(( $(date +%s) - t0 ))


# --- platform playbooks: security, Kubernetes (what runs offline), MLOps (PostgreSQL), monitoring ---
ip_of() { jq -r --arg n "$1" '.hsw_inventory.value.clusters[][] | select(.name == $n) | .ip' "$tfout"; }
cp_name=$(jq -r '.hsw_inventory.value.clusters.cloud[] | select(.role == "control_plane") | .name' "$tfout")
gw_name=$(jq -r '.hsw_inventory.value.clusters.cloud[] | select(.role != "control_plane") | .name' "$tfout" | head -n1)
cp_ip=$(ip_of "$cp_name"); gw_ip=$(ip_of "$gw_name")
c1_ip=$(ip_of "${computes[0]}")
{ [ -n "$cp_ip" ] && [ -n "$gw_ip" ] && [ -n "$c1_ip" ]; } || fail "cannot find the control plane, a cloud worker and a compute node"
# tcp_probe KEY FROM_IP TO_IP PORT: exit 0 when FROM connects to TO:PORT within 5 s.
tcp_probe() { ns_ssh "$1" "$2" timeout 5 bash -c "'exec 3<>/dev/tcp/$3/$4'" 2>/dev/null; }

# control_plane_report: what the control plane looked like, printed before an `up` with the platform fails (an API
# server that stopped answering left nothing else behind once the sandbox is gone): load and memory, every
# container the kubelet made (a restarted one shows twice), the kubelet's probe failures, kills and back-offs.
control_plane_report() {
  say "the control plane $cp_name ($cp_ip) at $(date +%T), host load $(cut -d' ' -f1-3 /proc/loadavg):"
  ns_ssh "$key_cloud" "$cp_ip" 'cat /proc/loadavg; free -m; sudo -n ctr -n k8s.io containers ls;
    sudo -n journalctl -u kubelet --no-pager -o short-precise | grep -iE "probe failed|killing container|back-off|oom.?kill" | tail -n 30;
    sudo -n journalctl -k --no-pager | grep -iE "oom.?kill|out of memory" | tail -n 5; top -bn1 -w 150 | head -n 20' >&2 \
    || say "(the control plane did not answer SSH)"
}

step "segmentation baseline: before the security playbook an HPC VM reaches a cloud VM (routed networks)"
tcp_probe "$key_hpc" "$c1_ip" "$gw_ip" 22 \
  || fail "${computes[0]} cannot reach $gw_name:22 before any policy: the networks do not route, the segmentation test would prove nothing"
info "${computes[0]} -> $gw_name:22 connects (no policy yet)"

step "hsw-cli up without --hpc-only: the platform playbooks (offline) and their checks"
t0=$(date +%s)
hsw up --skip-check 2>&1 | tee "$work/up-platform.log" >&2 || { control_plane_report; fail "hsw-cli up with the platform failed (log above)"; }
grep -q "terraform plan: no changes" "$work/up-platform.log" || fail "up's Terraform plan was not empty on a running deployment"
grep -q -- '--skip-tags online' "$work/up-platform.log" || fail "up did not skip the platform's online tasks"
grep -q '^hsw: skipped offline: ' "$work/up-platform.log" || fail "up's summary does not say what it skipped offline"
grep -Eq '^hsw: platform: [1-9][0-9]* changes?(: |$)' "$work/up-platform.log" || fail "the first platform run changed nothing"
jq -e '.hsw_offline == true and .hsw_hpc_subnet == "192.168.100.0/24" and .hsw_cloud_subnet == "192.168.200.0/24"
       and .monitoring_prometheus_retention == "7d" and .security_ssh_password_auth == false
       and .monitoring_server == $cp and .mlops_postgres_host == $cp' --arg cp "$cp_name" \
  "$state/ansible/platform-vars.json" >/dev/null || fail "platform-vars.json does not carry cluster.yaml's values"
# What up verified, one line each (verify/platform.rs): with routed networks Prometheus sees all 5 exporters, and
# the segmentation lets only the monitoring server across.
for want in "containerd .* answers on 2 cloud VMs" \
            "Kubernetes v1\.34\.4: 2 nodes Ready \($cp_name, $gw_name\)" \
            "CoreDNS answers in a pod on $gw_name: kubernetes\.default\.svc\.cluster\.local is 10\.96\.0\.1\$" \
            "pod network: a pod on $gw_name \(10\.244\.[0-9.]+\) fetched a page from a pod on $cp_name \(10\.244\.[0-9.]+\)" \
            "PostgreSQL on $cp_name takes connections" \
            "MLflow on $cp_name answers, with basic authentication" \
            "Prometheus on $cp_name scrapes the node exporters of 5 VMs\$" \
            "segmentation: ${computes[0]} \(HPC\) cannot reach $gw_name \(cloud\) on 22, 9100 or 10250; the monitoring server $cp_name scrapes across, $gw_name may not" \
            "sshd takes keys only on all 5 VMs"; do
  grep -Eq "^hsw: verified: $want" "$work/up-platform.log" || fail "up did not verify: $want"
  info "up verified: $(grep -E "^hsw: verified: $want" "$work/up-platform.log" | sed 's/^hsw: verified: //')"
done
timed "up (platform)" $(( $(date +%s) - t0 ))

# Kubernetes came from the bundle: every pod's image is one of the bundle's (nothing could be pulled: the guests
# have no route out, and kubeadm's imageRepository never resolves), the GPU worker carries the GPU plan's label,
# and how long kubeadm init and each node's way to Ready took.
step "Kubernetes: the bundle's images only, the GPU worker labelled, kubeadm init and node-Ready times"
kc() { ns_ssh "$key_cloud" "$cp_ip" sudo kubectl --kubeconfig /etc/kubernetes/admin.conf "$@"; }
pods=$(kc get pods -A -o json) || fail "kubectl get pods failed on $cp_name"
foreign=$(jq -r '[.items[].spec.containers[].image | select(startswith("registry.hsw.invalid/") | not)] | unique | join(", ")' <<< "$pods")
[ -z "$foreign" ] || fail "pods run images that are not the bundle's: $foreign"
running=$(jq -r '[.items[] | select(.metadata.namespace == "kube-system" and .status.phase == "Running")] | length' <<< "$pods")
[ "$running" -ge 6 ] || fail "only $running kube-system pods run (etcd, apiserver, controller-manager, scheduler, 2 CoreDNS)"
info "$running kube-system pods run, every image from registry.hsw.invalid (the bundle)"
nodes=$(kc get nodes -o json) || fail "kubectl get nodes failed on $cp_name"
label=$(jq -r --arg n "$gw_name" '.items[] | select(.metadata.name == $n) | .metadata.labels.compute // ""' <<< "$nodes")
[ "$label" = gpu ] || fail "$gw_name is labelled compute='$label', the GPU plan makes it a GPU worker"
info "$gw_name: compute=gpu"
init=$(sed -n 's/.*"msg": "kubeadm init took \([0-9]*\):\([0-9]*\):\([0-9]*\).*/\1 \2 \3/p' "$work/up-platform.log" | head -n1)
[ -n "$init" ] || fail "the platform run did not say how long kubeadm init took"
read -r h m sec <<< "$init"
timed "kubeadm init" $(( 10#$h * 3600 + 10#$m * 60 + 10#$sec ))
while IFS=$'\t' read -r node secs; do
  timed "Ready: $node" "$secs"
  info "$node: Ready $secs s after it registered"
done < <(jq -r '.items[] | [.metadata.name, ((.status.conditions[] | select(.type == "Ready") | .lastTransitionTime | fromdate)
                                              - (.metadata.creationTimestamp | fromdate))] | @tsv' <<< "$nodes")

# What up's checks leave out: MLflow's database user over TCP with its generated password, the drop rule's
# counter, and a password login refused end to end (up's check reads sshd -T).
step "MLflow's database over TCP; the drop rule counted; a password login is refused on every VM"
t0=$(date +%s)
pgpw=$(cat "$state/secrets/mlflow-postgres") || fail "no generated PostgreSQL password in $state/secrets"
[[ "$pgpw" =~ ^[A-Za-z0-9]+$ ]] || fail "the generated PostgreSQL password is not alphanumeric"
got=$(ns_ssh "$key_cloud" "$cp_ip" env PGPASSWORD="$pgpw" psql -h 127.0.0.1 -U mlflow -d mlflow -XtAc "'SELECT current_user'") \
  || fail "psql -h 127.0.0.1 -U mlflow -d mlflow failed on $cp_name"
[ "$got" = mlflow ] || fail "psql over TCP on $cp_name printed '$got'"
info "$cp_name: TCP + scram as mlflow into mlflow"
drops=$(ns_ssh "$key_cloud" "$gw_ip" sudo nft list table inet hsw_segmentation \
        | sed -n 's/.*counter packets \([0-9]*\) bytes.*drop.*/\1/p') || fail "cannot list the segmentation table on $gw_name"
[ "${drops:-0}" -gt 0 ] || fail "the drop rule on $gw_name counted no packets"
info "$gw_name: the 'other cluster' drop rule counted $drops packets"
askpass="$work/askpass.sh"
printf '#!/bin/sh\ntouch %s/askpass-called\necho not-the-password\n' "$work" > "$askpass"
chmod 0755 "$askpass"
while IFS=$'\t' read -r vm ip; do
  rc=0
  err=$(ip netns exec "$sandbox_name" env SSH_ASKPASS="$askpass" SSH_ASKPASS_REQUIRE=force DISPLAY=:0 \
        ssh -n -o BatchMode=no -o PreferredAuthentications=password,keyboard-interactive -o PubkeyAuthentication=no \
        -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=10 -o NumberOfPasswordPrompts=1 \
        "hsw@$ip" true 2>&1) || rc=$?
  [ "$rc" != 0 ] || fail "ssh with a password logged in to $vm"
  grep -q 'Permission denied (publickey)' <<< "$err" || fail "ssh to $vm with a password did not get 'Permission denied (publickey)': $err"
  [ ! -e "$work/askpass-called" ] || fail "$vm asked for a password"
  info "$vm: password login refused (the server offers publickey only)"
done < <(jq -r '.hsw_inventory.value.clusters[][] | [.name, .ip] | @tsv' "$tfout")
timed "platform extras" $(( $(date +%s) - t0 ))

# MLflow as its users reach it: from another cloud VM, over the cluster network, with the generated admin password
# (handed to curl on its standard input, never its command line): an experiment, a run with a metric, an artifact
# uploaded through the server (--serve-artifacts) and read back, the file on the server's disk; no answer without
# credentials; the HPC cluster does not reach the server at all.
step "MLflow from the GPU worker: an experiment, a run, a metric and an artifact; 401 without credentials; HPC kept out"
t0=$(date +%s)
mlpw=$(cat "$state/secrets/mlflow-admin") || fail "no generated MLflow admin password in $state/secrets"
[[ "$mlpw" =~ ^[A-Za-z0-9]+$ ]] || fail "the generated MLflow admin password is not alphanumeric"
ml() {  # ml METHOD PATH [CURL ARGS...]: the admin's call from the GPU worker to MLflow on the control plane
  local method=$1 path=$2; shift 2
  printf 'user = "admin:%s"\n' "$mlpw" | ip netns exec "$sandbox_name" ssh -i "$key_cloud" -o BatchMode=yes \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=10 -o LogLevel=ERROR "hsw@$gw_ip" -- \
    curl -fsS --max-time 60 -K - -X "$method" "$@" "'http://$cp_ip:5000$path'"
}
json() { printf "'%s'" "$1"; }  # a JSON body as one word for the remote shell (no single quote inside)
mltoken=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
exp_id=$(ml POST /api/2.0/mlflow/experiments/create -H "'Content-Type: application/json'" \
         -d "$(json "{\"name\": \"hsw-e2e-$mltoken\"}")" | jq -r .experiment_id) || fail "creating an MLflow experiment failed"
[[ "$exp_id" =~ ^[0-9]+$ ]] || fail "MLflow gave experiment id '$exp_id'"
run=$(ml POST /api/2.0/mlflow/runs/create -H "'Content-Type: application/json'" \
      -d "$(json "{\"experiment_id\": \"$exp_id\", \"start_time\": $(date +%s%3N)}")") || fail "creating an MLflow run failed"
run_id=$(jq -r .run.info.run_id <<< "$run")
art=$(jq -r .run.info.artifact_uri <<< "$run")
[ "$art" = "mlflow-artifacts:/$exp_id/$run_id/artifacts" ] || fail "the run's artifact URI is '$art', not served by the server"
ml POST /api/2.0/mlflow/runs/log-metric -H "'Content-Type: application/json'" \
  -d "$(json "{\"run_id\": \"$run_id\", \"key\": \"loss\", \"value\": 0.25, \"timestamp\": $(date +%s%3N), \"step\": 1}")" \
  >/dev/null || fail "logging a metric failed"
ml PUT "/api/2.0/mlflow-artifacts/artifacts/$exp_id/$run_id/artifacts/probe.txt" --data-binary "$mltoken" >/dev/null \
  || fail "uploading an artifact through MLflow failed"
got=$(ml GET "/api/2.0/mlflow-artifacts/artifacts/$exp_id/$run_id/artifacts/probe.txt") || fail "downloading the artifact failed"
[ "$got" = "$mltoken" ] || fail "the artifact came back as '$got'"
loss=$(ml GET "/api/2.0/mlflow/runs/get?run_id=$run_id" | jq -r '.run.data.metrics[] | select(.key == "loss") | .value')
[ "$loss" = 0.25 ] || fail "the run's metric loss is '$loss', not 0.25"
disk=$(ns_ssh "$key_cloud" "$cp_ip" sudo cat "/var/lib/mlflow/artifacts/$exp_id/$run_id/artifacts/probe.txt") \
  || fail "the artifact is not in /var/lib/mlflow/artifacts on $cp_name"
[ "$disk" = "$mltoken" ] || fail "the artifact on $cp_name's disk holds '$disk'"
code=$(ns_ssh "$key_cloud" "$gw_ip" curl -sS -o /dev/null -w "'%{http_code}'" --max-time 30 \
       "'http://$cp_ip:5000/api/2.0/mlflow/experiments/get?experiment_id=$exp_id'")
[ "$code" = 401 ] || fail "MLflow answered $code without credentials, not 401"
! tcp_probe "$key_hpc" "$c1_ip" "$cp_ip" 5000 || fail "${computes[0]} (HPC) reaches MLflow on $cp_name:5000"
info "$gw_name -> $cp_name:5000: experiment $exp_id, run $run_id (loss 0.25), artifact probe.txt up and back (on disk too); 401 without credentials; ${computes[0]} (HPC) cannot connect"
timed "MLflow client" $(( $(date +%s) - t0 ))

# --- status: what runs, as a user asks for it ---
step "hsw-cli status: everything up; a stopped service is named and the exit is 1"
t0=$(date +%s)
hsw status --format json > "$work/status.json" || fail "hsw-cli status exited non-zero on a healthy deployment: $(cat "$work/status.json")"
jq -e '(.vms | length == 5) and all(.vms[]; .up and .state == "running" and .address == .ip)' "$work/status.json" >/dev/null \
  || fail "status does not show 5 running VMs at their planned addresses: $(jq -c '.vms' "$work/status.json")"
jq -e '(.slurm | length == 2) and all(.slurm[]; .state == "idle")' "$work/status.json" >/dev/null \
  || fail "status does not show both compute nodes idle: $(jq -c '.slurm' "$work/status.json")"
jq -e '(.kubernetes | length == 2) and all(.kubernetes[]; .state == "Ready")' "$work/status.json" >/dev/null \
  || fail "status does not show both cloud VMs Ready on Kubernetes: $(jq -c '.kubernetes' "$work/status.json")"
jq -e 'all(.services[]; .up) and (.down == []) and ([.services[].service] | index("kubelet") != null and index("mlflow") != null)' "$work/status.json" >/dev/null \
  || fail "status shows a service down, or no kubelet or MLflow: $(jq -c '.services, .down' "$work/status.json")"
units=$("$cli" gpu plan --format json --config "$config" | jq -c '[.. | objects | select(has("attach")) | [.vm, .attach]] | sort')
jq -e --argjson want "$units" '[.vms[] | .name as $vm | .gpu_units[] | [$vm, .attach]] | sort == $want' "$work/status.json" >/dev/null \
  || fail "status's GPU units are not gpu plan's $units: $(jq -c '[.vms[] | {name, gpu_units}]' "$work/status.json")"
info "status: 5 VMs running, 2 Slurm nodes idle, 2 Kubernetes nodes Ready, $(jq '.services | length' "$work/status.json") services active"
victim=${computes[0]}
victim_ip=$(jq -r --arg n "$victim" '.vms[] | select(.name == $n) | .ip' "$work/status.json")
ns_ssh "$key_hpc" "$victim_ip" sudo systemctl stop prometheus-node-exporter || fail "cannot stop the node exporter on $victim"
rc=0; hsw status > "$work/status-down.txt" 2>&1 || rc=$?
ns_ssh "$key_hpc" "$victim_ip" sudo systemctl start prometheus-node-exporter || fail "cannot start the node exporter on $victim again"
[ "$rc" = 1 ] || fail "status exited $rc with the node exporter on $victim stopped (want 1): $(cat "$work/status-down.txt")"
grep -qx "down: prometheus-node-exporter on $victim is inactive" "$work/status-down.txt" \
  || fail "status did not name the stopped node exporter on $victim: $(cat "$work/status-down.txt")"
info "status with the node exporter on $victim stopped: exit 1, named in one down: line"
hsw status > "$work/status-again.txt" 2>&1 || fail "status after starting it again: $(cat "$work/status-again.txt")"
timed status $(( $(date +%s) - t0 ))

# --- backup, down, restore (tests/e2e/backup.sh); the restored deployment is what down removes below ---
step "backup and restore: tests/e2e/backup.sh on this deployment"
t0=$(date +%s)
backup_keep=(); [ "$keep" = 0 ] || backup_keep=(--keep)
bash "$root/tests/e2e/backup.sh" --cli "$cli" --config "$config" --sandbox-name "$sandbox_name" --state-dir "$state" \
  --work "$work" "${backup_keep[@]}" || fail "the backup and restore test failed (above)"
timed "backup + restore" $(( $(date +%s) - t0 ))

# --- second up, on the restored deployment: nothing changes ---
# After backup.sh's down and restore the VMs booted from the restored disks: an `up` then must change nothing, which
# proves the playbooks idempotent and everything they wrote persistent across a reboot (units enabled, routes,
# modules, sysctls), and the restore faithful. One `up` for both, instead of one before the backup and one after.
step "hsw-cli up again, on the restored deployment: nothing may change"
t0=$(date +%s)
# --no-verify: the platform run above verified this deployment, backup.sh its restore (SSH with the old host keys,
# the job, the file, the row), and changed=0 below means nothing differs from what the playbooks made.
hsw up --skip-check --no-verify 2>&1 | tee "$work/up2.log" >&2 || { control_plane_report; fail "the second hsw-cli up failed"; }
grep -q "terraform plan: no changes" "$work/up2.log" || fail "the second up's Terraform plan was not empty"
recap=$(sed -n '/^PLAY RECAP/,$p' "$work/up2.log" | grep ' : ok=')
[ -n "$recap" ] || fail "no PLAY RECAP in the second up's output"
if grep -v ' changed=0 ' <<< "$recap" >&2; then
  # The tasks that changed, each with its hosts (the recaps are cumulative over the playbooks of one run).
  awk '/^TASK \[/ { task = $0 } /^changed: \[/ { print task " " $0 }' "$work/up2.log" >&2
  fail "the second playbook run changed something (the tasks above)"
fi
grep -q '^hsw: ansible: no changes' "$work/up2.log" || fail "the second up's HPC playbook changed something"
grep -q '^hsw: platform: no changes' "$work/up2.log" || fail "the second up's platform playbooks changed something"
info "terraform plan empty; PLAY RECAP changed=0 on every host, HPC and platform playbooks"
timed "up (second)" $(( $(date +%s) - t0 ))

# --- down ---
step "hsw-cli down: nothing may be left"
t0=$(date +%s)
hsw down 2>&1 | tee "$work/down.log" >&2 || fail "hsw-cli down failed"
grep -q "after destroy: no domain, network or VM disk" "$work/down.log" || fail "down left libvirt objects"
[ ! -e "/run/netns/$sandbox_name" ] || fail "netns $sandbox_name is still there"
! ip netns list | awk '{print $1}' | grep -qx "$sandbox_name" || fail "ip netns lists $sandbox_name"
for d in "/run/hsw-sandbox/$sandbox_name" "/var/lib/hsw-sandbox/$sandbox_name"; do
  [ ! -e "$d" ] || fail "$d is still there"
done
rc=0; sandbox status >/dev/null || rc=$?
[ "$rc" = 3 ] || fail "scripts/sandbox.sh status says something is left (exit $rc)"
info "nothing left: no domain, network, VM disk, netns, libvirtd or sandbox directory"
timed down $(( $(date +%s) - t0 ))

step "PASSED in $(( $(date +%s) - t_all )) s"
printf '    %s\n' "${timings[@]}" >&2
