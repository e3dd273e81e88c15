#!/usr/bin/env bash
# Read-only GPU discovery on a machine with an NVIDIA GPU: builds hsw-cli (release) and prints what NVML
# reports through hsw's NVML backend, next to nvidia-smi's own view.
#
# It NEVER changes anything: no MIG mode change, no GPU/compute instance created or destroyed, no reset.
# (`hsw-cli gpu discover` only reads: device list, MIG mode, profile tables with placements, existing instances.)
#
# Usage: scripts/gpu-discover-on-real-gpu.sh            (from the repository root or anywhere inside it)
set -u
cd "$(dirname "$0")/.." || exit 1

section() { printf '\n===== %s =====\n' "$*"; }

# HSW_CLI=path uses a prebuilt binary (a GPU machine without a Rust toolchain); else build one.
if [ -n "${HSW_CLI:-}" ]; then
    BIN=$HSW_CLI
else
    section "build hsw-cli (release)"
    if ! cargo build --release -p hsw-cli; then
        echo "build failed" >&2
        exit 1
    fi
    BIN=target/release/hsw-cli
    [ -n "${CARGO_TARGET_DIR:-}" ] && BIN="$CARGO_TARGET_DIR/release/hsw-cli"
fi
section "hsw-cli version"
"$BIN" --version

section "hsw-cli gpu discover --backend nvml --format json"
# The sysfs root is the real one (read only); the simulated backend is not involved (--backend nvml).
"$BIN" gpu discover --backend nvml --format json
echo "exit status: $?"

section "hsw-cli gpu discover --backend nvml (text)"
"$BIN" gpu discover --backend nvml
echo "exit status: $?"

section "nvidia-smi -L"
nvidia-smi -L
echo "exit status: $?"

section "nvidia-smi --query-gpu (MIG mode, PCI device id)"
nvidia-smi --query-gpu=index,name,pci.bus_id,pci.device_id,mig.mode.current,mig.mode.pending,memory.total --format=csv
echo "exit status: $?"

section "nvidia-smi mig -lgip (fails when MIG is disabled; that is fine)"
nvidia-smi mig -lgip
echo "exit status: $?"

section "nvidia-smi mig -lgipp (placements; fails when MIG is disabled)"
nvidia-smi mig -lgipp
echo "exit status: $?"

section "nvidia-smi mig -lgi (existing GPU instances)"
nvidia-smi mig -lgi
echo "exit status: $?"
exit 0
