#!/usr/bin/env bash
# End-to-end test of `hsw-cli backup`, `backup verify`, `restore` on a running deployment (tests/e2e/up.sh runs
# it on the default config after its `status` checks, then runs its second `up` on the restored deployment; it
# can run on any deployment `hsw-cli up` made in a sandbox):
#
#   markers    a Slurm job COMPLETED in sacct, a file with a random token in the login user's home on the
#              controller (the shared home), a row with the token in PostgreSQL on the cloud control plane
#   backup     `hsw-cli backup --encrypt-passphrase-file` exits 0, wrote an encrypted backup (every piece an age
#              file) that verifies, with the three dumps (read back with `backup cat`: the token in the
#              PostgreSQL dump and the file in home.tar) and nothing left out; `backup verify` exits 0
#   down       `hsw-cli down`: the sandbox and everything in it are gone
#   restore    without the passphrase `restore` exits 1 and says it needs it; `hsw-cli restore BACKUP
#              --passphrase-file F` exits 0 and says `terraform plan: no changes`; then every VM answers SSH
#              with the host key it had (strict checking against the restored known_hosts), sacct still has the
#              job COMPLETED, the file and the row are there
#   damage     one byte flipped in the largest disk image of the backup: `backup verify` and `restore --replace`
#              exit 1 naming that piece, and the restored deployment still runs
# It reports the backup's size and the backup, verify and restore times. The backup is removed at the end.
#
# Usage: tests/e2e/backup.sh --cli BIN --config FILE --sandbox-name NAME --state-dir DIR [--work DIR] [--keep]
#   --keep   on failure, leave the backup (in the work directory) for debugging
# Needs root; every packet stays inside the sandbox's netns.
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/../lib.sh" backup.sh

cli="" config="" sandbox_name="" state="" work="" keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --cli) cli=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --sandbox-name) sandbox_name=$2; shift 2 ;;
    --state-dir) state=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) show_help 22; exit 0 ;;
    *) usage_error "unknown argument '$1' (see --help)" ;;
  esac
done
{ [ -x "$cli" ] && [ -f "$config" ] && [ -n "$sandbox_name" ] && [ -d "$state" ]; } \
  || usage_error "--cli, --config, --sandbox-name and --state-dir are needed (see --help)"
require_root
require_tools jq ssh ip python3 tar
cd "$root"   # hsw-cli finds the repository (scripts/sandbox.sh) from here
own_work=0
if [ -z "$work" ]; then work=$(mktemp -d /var/tmp/hsw-backup-e2e.XXXXXX); own_work=1; else mkdir -p "$work"; fi
backups="$work/backups"
cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ "$keep" = 1 ]; then
    say "--keep: the backup is left in $backups"
  else
    rm -rf --one-file-system "$backups"
    [ "$own_work" = 0 ] || rm -rf --one-file-system "$work"
  fi
  exit "$rc"
}
on_exit cleanup

deploy=(--config "$config" --sandbox-name "$sandbox_name" --state-dir "$state")
tfout="$state/terraform-output.json"
[ -f "$tfout" ] || fail "no $tfout: is $state a deployment's state directory?"
ip_of_role() { jq -r --arg c "$1" --arg r "$2" '.hsw_inventory.value.clusters[$c][] | select(.role == $r) | .ip' "$tfout" | head -n1; }
ctl_ip=$(ip_of_role hpc controller)
cp_ip=$(ip_of_role cloud control_plane)
{ [ -n "$ctl_ip" ] && [ -n "$cp_ip" ]; } || fail "the deployment has no HPC controller or no cloud control plane"
key() { printf '%s/ssh/%s/id_ed25519' "$state" "$1"; }
# ns_ssh CLUSTER IP CMD: ssh as the login user from inside the netns, checking the host key against the
# deployment's known_hosts (strict: a VM that came back with another key fails).
ns_ssh() {
  local c=$1 ip=$2; shift 2
  ip netns exec "$sandbox_name" ssh -n -i "$(key "$c")" -o BatchMode=yes -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile="$state/ssh/$c/known_hosts" -o ConnectTimeout=10 -o LogLevel=ERROR "hsw@$ip" -- "$@"
}
report=()
# job_state JOB DELAY: the job's state in sacct once it is COMPLETED, else the last one seen after 60 tries DELAY
# seconds apart (slurmdbd may not answer yet).
job_state() {
  local st=""
  for _ in $(seq 60); do
    st=$(ns_ssh hpc "$ctl_ip" sacct -n -X -P -j "$1" -o State 2>/dev/null) || true
    [ "$st" = COMPLETED ] && break
    sleep "$2"
  done
  printf '%s' "$st"
}

step "markers: a Slurm job in sacct, a file in the shared home, a row in PostgreSQL"
token=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
job=$(ns_ssh hpc "$ctl_ip" sbatch --parsable -t 2 -o /dev/null --wrap hostname) || fail "sbatch failed on the controller"
st=$(job_state "$job" 2)
[ "$st" = COMPLETED ] || fail "job $job is '$st' in sacct, not COMPLETED"
ns_ssh hpc "$ctl_ip" "echo $token > ~/hsw-backup-probe" || fail "cannot write the probe file in the controller's home"
ns_ssh cloud "$cp_ip" "sudo -n -u postgres psql -X -q -v ON_ERROR_STOP=1 -d postgres \
  -c 'CREATE TABLE IF NOT EXISTS hsw_backup_probe (v text)' -c \"INSERT INTO hsw_backup_probe VALUES ('$token')\"" \
  || fail "cannot write the probe row into PostgreSQL on the control plane"
info "job $job COMPLETED; ~/hsw-backup-probe and the PostgreSQL row hold $token"

step "hsw-cli backup (encrypted with a passphrase), then backup verify"
pass="$work/passphrase"
(umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' > "$pass")
t0=$(date +%s)
# --no-verify: the separate `backup verify` below reads it back (once is enough for the test's time).
"$cli" backup "${deploy[@]}" --out "$backups" --no-verify --encrypt-passphrase-file "$pass" 2>&1 \
  | tee "$work/backup.log" >&2 || fail "hsw-cli backup failed"
t_backup=$(( $(date +%s) - t0 ))
mapfile -t made < <(find "$backups" -mindepth 1 -maxdepth 1 -type d)
[ "${#made[@]}" = 1 ] || fail "hsw-cli backup left ${#made[@]} directories in $backups, expected 1"
b=${made[0]}
m="$b/manifest.json"
jq -e '.skipped == []' "$m" >/dev/null || fail "the backup left things out: $(jq -c .skipped "$m")"
for d in slurm-accounting.sql home.tar postgresql.sql; do
  jq -e --arg p "dumps/$d" '[.pieces[].path] | index($p)' "$m" >/dev/null || fail "the backup has no dumps/$d"
done
jq -e '.encryption.passphrase == true and .format == 2' "$m" >/dev/null || fail "the manifest does not say it is encrypted"
! grep -q "$token" "$b/dumps/postgresql.sql" || fail "the encrypted PostgreSQL dump shows the probe row in clear"
dump() { "$cli" backup cat "$b" "dumps/$1" --passphrase-file "$pass"; }
# (grep without -q: it reads to the end, so no writer upstream meets a closed pipe)
dump postgresql.sql | grep "$token" >/dev/null || fail "the PostgreSQL dump does not hold the probe row"
dump home.tar | tar -t | grep 'hsw/hsw-backup-probe$' >/dev/null || fail "home.tar does not hold the probe file"
# shellcheck disable=SC2016  # the backquotes are MariaDB's, in the dump
dump slurm-accounting.sql | grep 'INSERT INTO `[a-z0-9_]*_job_table`' >/dev/null || fail "the accounting dump holds no job"
vms=$(jq '[.domains[] | select(.running)] | length' "$m")
[ "$vms" = "$(jq '[.hsw_inventory.value.clusters[][]] | length' "$tfout")" ] || fail "the backup holds $vms running VMs"
size=$(du -sb "$b" | cut -f1)
t0=$(date +%s)
"$cli" backup verify "$b" >&2 || fail "hsw-cli backup verify failed on a fresh backup"
t_verify=$(( $(date +%s) - t0 ))
report+=("backup: $(( size / 1048576 )) MiB, $(jq '.pieces | length' "$m") pieces, $vms VMs; backup ${t_backup} s, verify ${t_verify} s")
info "${report[-1]}"

step "hsw-cli down, then hsw-cli restore from the backup alone"
"$cli" down "${deploy[@]}" >&2 || fail "hsw-cli down failed"
[ ! -e "/run/netns/$sandbox_name" ] || fail "the sandbox's netns is still there after down"
rc=0; err=$("$cli" restore "$b" 2>&1) || rc=$?
{ [ "$rc" = 1 ] && grep -q 'the backup is encrypted: open it with its passphrase' <<< "$err"; } \
  || fail "restore without the passphrase exited $rc: $err"
[ ! -e "/run/netns/$sandbox_name" ] || fail "restore without the passphrase started the sandbox"
t0=$(date +%s)
"$cli" restore "$b" --passphrase-file "$pass" 2>&1 | tee "$work/restore.log" >&2 || fail "hsw-cli restore failed"
t_restore=$(( $(date +%s) - t0 ))
grep -q '^hsw: terraform plan: no changes' "$work/restore.log" || fail "after the restore terraform plan was not empty"

step "after the restore: each VM's old host key, the job in sacct, the file, the row"
t0=$(date +%s)
# All VMs boot at once and are polled together under one deadline (TCG guests running Kubernetes boot slowly on
# a loaded host). The last ssh error of each VM is kept: on failure it tells a timeout from a refused connection
# from a changed host key.
declare -A pending=() last_err=()
while IFS=$'\t' read -r cluster vm ip; do pending["$vm"]="$cluster $ip"; done \
  < <(jq -r '.hsw_inventory.value.clusters | to_entries[] | .key as $c | .value[] | [$c, .name, .ip] | @tsv' "$tfout")
deadline=$(( t0 + 900 ))
while [ "${#pending[@]}" -gt 0 ] && [ "$(date +%s)" -lt "$deadline" ]; do
  for vm in "${!pending[@]}"; do
    read -r cluster ip <<< "${pending[$vm]}"
    got=$(ns_ssh "$cluster" "$ip" hostname 2>"$work/ssh.err") || got=""
    if [ "$got" = "$vm" ]; then
      info "$vm answers with its old host key after $(( $(date +%s) - t0 )) s"
      unset "pending[$vm]"
    else
      last_err["$vm"]="$(tail -n 2 "$work/ssh.err" | tr '\n' ' ')"
      [ -z "$got" ] || last_err["$vm"]+=" (hostname said: $got)"
    fi
  done
  [ "${#pending[@]}" = 0 ] || sleep 5
done
if [ "${#pending[@]}" -gt 0 ]; then
  # What libvirt and the netns know of each VM that did not answer, before failing.
  uri=$(sandbox env URI)
  for vm in "${!pending[@]}"; do
    read -r cluster ip <<< "${pending[$vm]}"
    say "$vm ($ip): last ssh error: ${last_err[$vm]:-none}"
    say "$vm: libvirt says: $(timeout 30 virsh -c "$uri" domstate --reason "$vm" 2>&1 | tr '\n' ' ')"
    say "$vm: netns neighbour entry: $(ip netns exec "$sandbox_name" ip neigh show "$ip" 2>&1 | tr '\n' ' ')"
  done
  fail "${!pending[*]} did not answer SSH with the old host key within $(( deadline - t0 )) s of the restore"
fi
t_ssh=$(( $(date +%s) - t0 ))
st=$(job_state "$job" 5)
[ "$st" = COMPLETED ] || fail "after the restore sacct says '$st' for job $job"
# shellcheck disable=SC2088  # the tilde is for the guest's shell
[ "$(ns_ssh hpc "$ctl_ip" cat '~/hsw-backup-probe')" = "$token" ] || fail "the probe file is not in the restored home"
row=""
for _ in $(seq 30); do
  row=$(ns_ssh cloud "$cp_ip" "sudo -n -u postgres psql -X -tA -d postgres -c 'SELECT v FROM hsw_backup_probe'" 2>/dev/null) && break
  sleep 5
done
grep -qx "$token" <<< "$row" || fail "the probe row is not in the restored PostgreSQL: '$row'"
report+=("restore: ${t_restore} s, then every VM on SSH ${t_ssh} s later")
info "every VM answers with its old host key; job $job COMPLETED; the file and the row hold $token"
info "${report[-1]}"

step "a damaged backup: one byte flipped in its largest disk image"
piece=$(jq -r '[.pieces[] | select(.kind == "disk")] | max_by(.size) | .path' "$m")
python3 - "$b/$piece" <<'EOF'
import os, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(os.path.getsize(sys.argv[1]) // 2)
    byte = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([byte[0] ^ 0x01]))
EOF
rc=0; err=$("$cli" backup verify "$b" 2>&1) || rc=$?
[ "$rc" = 1 ] || fail "backup verify exited $rc on a damaged backup"
grep -q "$piece is damaged" <<< "$err" || fail "backup verify did not name the damaged piece $piece: $err"
rc=0; err=$("$cli" restore --replace "$b" --passphrase-file "$pass" 2>&1) || rc=$?
[ "$rc" = 1 ] || fail "restore exited $rc on a damaged backup"
grep -q "nothing was restored: .*$piece is damaged" <<< "$err" || fail "restore did not refuse naming $piece: $err"
ns_ssh hpc "$ctl_ip" true || fail "the deployment does not answer after the refused restore"
info "verify and restore refused it, naming $piece; the deployment still runs"

for r in "${report[@]}"; do say "$r"; done
