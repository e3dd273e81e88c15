#!/usr/bin/env bash
# The main job on the embedded default configuration: installs what is missing, builds, checks the
# host, validates and plans the default cluster, then brings it up in a sandbox network namespace
# (Terraform + the hsw provider on a private libvirtd, then Ansible: a working Slurm cluster and the platform
# playbooks on both clusters), and prints how long each phase took.
# Usage: scripts/main.sh            (from the repository root, as root on Debian 12)
#        target/release/hsw-cli down   tears it all down again
set -euo pipefail
cd "$(dirname "$0")/.."
# Each phase's wall time, printed at the end (the speed issue reports the main command per phase).
t_all=$(date +%s)
times=()
phase() {  # phase NAME COMMAND...: runs it, records its seconds
  local name=$1 t
  shift
  echo; echo "==> $name"
  t=$(date +%s)
  "$@"
  times+=("$(printf '%-16s %5d s' "$name" $(( $(date +%s) - t )))")
}
report() {
  local rc=$?
  local how="done"
  if [ "$rc" != 0 ]; then how="stopped (exit $rc)"; fi
  echo; echo "main.sh: $how in $(( $(date +%s) - t_all )) s"
  [ ${#times[@]} -eq 0 ] || printf '    %s\n' "${times[@]}"
}
trap report EXIT
bin=target/release/hsw-cli
export HSW_PROVIDER_BIN="$PWD/target/release/terraform-provider-hsw"
phase "install" bash -c 'scripts/install-deps.sh full && scripts/install-tools.sh main'
# Only the two binaries the job runs (no test or bench dependencies are built).
phase "build" cargo build --release --locked -p hsw-cli -p terraform-provider-hsw
phase "provider install" "$bin" provider install --binary "$HSW_PROVIDER_BIN"   # Terraform and OpenTofu find it
phase "check" "$bin" check                                                    # the embedded default
phase "validate" "$bin" validate
phase "gpu plan" "$bin" gpu plan
phase "up" "$bin" up                                                          # in a sandbox netns
