#!/usr/bin/env bash
# Benchmark (not a test): the HPC playbook run that changes nothing (what a second `hsw-cli up` runs, through
# `hsw-cli ansible hpc`) with Ansible's own `linear` strategy as the baseline and with mitogen's
# `mitogen_linear` (Debian's ansible-mitogen: one Python interpreter per host, kept across tasks, instead of one
# per task), alternating, measured in the same run against the same VMs. Reports each run, the medians, their
# ratio and the load average. Every run must end with changed=0 on every host, or the comparison is void.
#
# Usage: tests/bench/ansible-strategy.sh [RUNS]      (default 3 rounds)
# Environment:
#   HSW_BENCH_REUSE="SANDBOX STATE_DIR CONFIG"   measure a deployment `hsw-cli up` already made (kept as it is);
#                                                 without it the bench makes one in sandbox hsw-ansible-bench
#                                                 (`hsw-cli up --no-verify` on the embedded default) and removes
#                                                 it at the end
# Needs root and `scripts/install-deps.sh full`. Every packet stays inside the sandbox's netns.
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/../lib.sh" ansible-strategy
runs=${1:-3}
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || usage_error "RUNS must be a positive number, not '$runs'"
require_root
require_tools jq ansible-playbook
[ -f /usr/lib/python3/dist-packages/ansible_mitogen/plugins/strategy/mitogen_linear.py ] \
  || fail "Debian's ansible-mitogen is not installed (scripts/install-deps.sh installs it)"

cli="${HSW_CLI_BIN:-}"
if [ -z "$cli" ]; then
  cargo_build release -p hsw-cli -p terraform-provider-hsw
  cli="$bin_dir/hsw-cli"
  export HSW_PROVIDER_BIN="$bin_dir/terraform-provider-hsw"
fi

made=0
if [ -n "${HSW_BENCH_REUSE:-}" ]; then
  read -r sandbox_name state config <<< "$HSW_BENCH_REUSE"
  { [ -n "$sandbox_name" ] && [ -d "$state" ] && [ -f "$config" ]; } \
    || usage_error "HSW_BENCH_REUSE must be 'SANDBOX STATE_DIR CONFIG' of an existing deployment"
  work=$(mktemp -d /var/tmp/hsw-ansible-bench.XXXXXX)
else
  sandbox_name=hsw-ansible-bench
  work=$(mktemp -d /var/tmp/hsw-ansible-bench.XXXXXX)
  state="$work/state"
  config="$work/cluster.yaml"
  cp "$root/examples/minimal-dev.yaml" "$config"   # the embedded default
  made=1
fi
hsw() { (cd "$root" && "$cli" "$@" --config "$config" --sandbox-name "$sandbox_name" --state-dir "$state"); }
cleanup() {
  local rc=$?
  set +e
  [ "$made" = 1 ] && hsw down >/dev/null 2>&1
  rm -rf --one-file-system "$work"
  exit "$rc"
}
on_exit cleanup

if [ "$made" = 1 ]; then
  say "hsw-cli up --no-verify in sandbox $sandbox_name (not measured)"
  hsw up --no-verify --hpc-only > "$work/up.log" 2>&1 || { tail -40 "$work/up.log" >&2; fail "hsw-cli up failed"; }
fi
tfout="$state/terraform-output.json"
[ -f "$tfout" ] || fail "no $tfout: is the deployment up?"

one() {  # one STRATEGY LOG: prints the seconds of one no-change run
  local t0 t1
  t0=$(date +%s.%N)
  (cd "$root" && sandbox exec -- env ANSIBLE_STRATEGY="$1" ANSIBLE_NOCOLOR=1 \
     "$cli" ansible hpc --config "$config" --tf-output "$tfout" --state-dir "$state") > "$2" 2>&1 \
    || { tail -40 "$2" >&2; fail "the $1 run failed (log above)"; }
  t1=$(date +%s.%N)
  local recap
  recap=$(sed -n '/^PLAY RECAP/,$p' "$2" | grep ' : ok=') || fail "no PLAY RECAP in the $1 run"
  if grep -v ' changed=0 ' <<< "$recap" >&2; then fail "the $1 run changed something (above): not a no-change run"; fi
  grep -q 'mitogen' "$2" && [ "$1" = linear ] && fail "the linear run mentions mitogen"
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f\n", b - a}'
}
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

# No warm-up: `up` left the hosts converged, and every run must find them so (changed=0). The rounds alternate.
lin=() mit=()
for i in $(seq "$runs"); do
  lin+=("$(one linear "$work/linear-$i.log")")
  mit+=("$(one mitogen_linear "$work/mitogen-$i.log")")
  say "round $i: linear ${lin[-1]} s, mitogen_linear ${mit[-1]} s"
done
ml=$(printf '%s\n' "${lin[@]}" | median)
mm=$(printf '%s\n' "${mit[@]}" | median)
hosts=$(sed -n '/^PLAY RECAP/,$p' "$work/linear-1.log" | grep -c ' : ok=')
tasks=$(grep -c '^TASK ' "$work/linear-1.log")
printf '\nHPC playbook, no change, %s hosts, %s tasks (%s rounds, medians):\n' "$hosts" "$tasks" "$runs"
printf '  linear (baseline)   %7.1f s\n' "$ml"
printf '  mitogen_linear      %7.1f s   ratio %.2fx of the baseline\n' "$mm" "$(awk -v a="$mm" -v b="$ml" 'BEGIN {print a / b}')"
printf '  load average: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
