#!/usr/bin/env bash
# Benchmark (not a test): `hsw-cli up` of the embedded default from nothing, with the guest images cached, against
# the plain script that boots the same VMs to their DHCP leases (tests/bench/plain-boot.sh), measured in the same
# round; split by up's steps (its `hsw: timings:` line). Goals (issue 16): `up --hpc-only` (the HPC cluster
# configured and verified) <= 2x the plain boot; `up --both` (both clusters configured and verified, offline)
# <= 3x.
#
# How:
#   0. Warm-up, not timed: `hsw-cli up --no-verify` (with --hpc-only unless --both) in sandbox hsw-up-bench, so
#      that the guest images (and with --both the Kubernetes bundle) are cached; record what it made
#      (plain_record), then `hsw-cli down`.
#   1. RUNS rounds, each: `hsw-cli up` (checks on) with a fresh state directory and the sandbox stopped, timed;
#      `terraform destroy` (the sandbox and the pool's base images stay); the plain script, timed; `hsw-cli down`.
#   2. Per round and as medians: up's time, each of its steps, the plain script's time, their ratio, the load.
#
# Usage: tests/bench/up.sh [--both] [RUNS]     (default: --hpc-only, 1 round)
# Needs root and `scripts/install-deps.sh full`; with --both the bundle (`hsw-cli bundle build`, which up runs).
# Every packet stays in the sandbox's netns.
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/../lib.sh" up-bench
# shellcheck source=tests/bench/plain-boot.sh
. "$(dirname "$0")/plain-boot.sh"
mode=(--hpc-only) what="up --hpc-only" goal=2
runs=1
for a in "$@"; do
  case "$a" in
    --both) mode=() what="up (both clusters)" goal=3 ;;
    -h|--help) show_help 19; exit 0 ;;
    *) [[ "$a" =~ ^[1-9][0-9]*$ ]] || usage_error "unknown argument '$a' (see --help)"; runs=$a ;;
  esac
done
sandbox_name=hsw-up-bench
work=/var/tmp/hsw-up-bench

require_root
require_tools virsh jq qemu-img genisoimage terraform

say "building hsw-cli and terraform-provider-hsw (release)"
cargo_build release -p hsw-cli -p terraform-provider-hsw
cli="$bin_dir/hsw-cli"
export HSW_PROVIDER_BIN="$bin_dir/terraform-provider-hsw"

state=""
down() { "$cli" down --sandbox-name "$sandbox_name" --state-dir "$1" >"$work/down.log" 2>&1; }
cleanup() {
  set +e
  [ -z "$state" ] || down "$state"
  sandbox stop >/dev/null 2>&1
}
on_exit cleanup
cleanup
rm -rf --one-file-system "$work"
mkdir -p "$work"

state="$work/state-warm"
say "warm-up: hsw-cli ${mode[*]} up --no-verify (images, keys, terraform init; log $work/warm.log)"
"$cli" up "${mode[@]}" --skip-check --no-verify --sandbox-name "$sandbox_name" --state-dir "$state" >"$work/warm.log" 2>&1 \
  || { tail -30 "$work/warm.log" >&2; fail "the warm-up hsw-cli up failed (log $work/warm.log)"; }
plain_record "$work"
down "$state" || fail "hsw-cli down failed ($work/down.log)"
state=""

up_times=() base_times=() splits=() loads=()
for r in $(seq "$runs"); do
  state="$work/state-$r"
  say "round $r/$runs: hsw-cli $what from nothing (log $work/up-$r.log)"
  t0=$(ms)
  "$cli" up "${mode[@]}" --skip-check --sandbox-name "$sandbox_name" --state-dir "$state" >"$work/up-$r.log" 2>&1 \
    || { tail -30 "$work/up-$r.log" >&2; fail "hsw-cli up failed (log $work/up-$r.log)"; }
  up_times+=($(( $(ms) - t0 )))
  loads+=("$(cut -d' ' -f1-3 /proc/loadavg)")
  split=$(sed -n 's/^hsw: timings: //p' "$work/up-$r.log")
  [ -n "$split" ] || fail "hsw-cli up printed no timings line (log $work/up-$r.log)"
  splits+=("$split")
  sandbox_terraform "$state/terraformrc" terraform -chdir="$state/terraform" destroy -auto-approve -no-color \
    -input=false >"$work/destroy-$r.log" 2>&1 || fail "terraform destroy failed ($work/destroy-$r.log)"
  plain_nothing_left "$work" "terraform destroy"
  say "round $r/$runs: the plain script"
  plain_boot "$work" "$r"
  base_times+=("$plain_ms")
  down "$state" || fail "hsw-cli down failed ($work/down.log)"
  state=""
  say "round $r: $what ${up_times[-1]} ms (${splits[-1]}); plain boot ${base_times[-1]} ms (load: ${loads[-1]})"
done

u=$(median "${up_times[@]}") p=$(median "${base_times[@]}")
echo "the default's ${#plain_doms[@]} VMs, images cached, median of $runs rounds: $what ${u} ms; plain boot to" \
  "DHCP leases ${p} ms"
for i in "${!up_times[@]}"; do
  awk -v u="${up_times[$i]}" -v p="${base_times[$i]}" -v s="${splits[$i]}" -v l="${loads[$i]}" -v n=$((i + 1)) \
    'BEGIN { printf "round %d: %.2fx (up %d ms = %s; plain %d ms; load after up %s)\n", n, u / p, u, s, p, l }'
done
awk -v u="$u" -v p="$p" -v g="$goal" 'BEGIN { printf "ratio of the medians: %.2fx (goal <= %dx)\n", u / p, g }'
