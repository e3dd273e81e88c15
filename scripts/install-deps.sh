#!/usr/bin/env bash
# Installs every system and tool dependency the project needs, idempotently.
# Usage: scripts/install-deps.sh [base|full|test]
#   base: what building and the unit/fixture tests need (Rust toolchain is assumed, see README)
#   full: plus libvirt, QEMU, image tools, Packer and Ansible for the sandbox and end-to-end tests
#   test: full, plus what only the test command uses (zsh and fish, whose completion scripts it checks)
# Services are never started by the package scripts (policy-rc.d), and libvirt's "default"
# network is never autostarted: every libvirtd this project uses runs inside its own netns.
set -euo pipefail
level="${1:-full}"

need_root() { [ "$(id -u)" -eq 0 ] || { echo "install-deps: run as root (apt-get is needed)" >&2; exit 2; }; }

base_pkgs=(pkg-config protobuf-compiler libvirt-dev git ca-certificates shellcheck nftables zip ovmf libxml2-utils)
full_pkgs=(libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
           qemu-system-x86 qemu-utils dnsmasq-base iproute2 mmdebstrap e2fsprogs
           cloud-image-utils genisoimage openssh-client packer ansible mdevctl jq
           busybox-static)
# Not needed, installed with full: hsw-cli runs Ansible with mitogen's strategy when this is present (several
# times faster on TCG guests: README, Performance). `hsw-cli check` does not ask for it.
speed_pkgs=(ansible-mitogen)
# Only the tests use these: `hsw-cli completions zsh|fish` is checked by the shells themselves.
test_pkgs=(zsh fish)

missing=()
pkgs=("${base_pkgs[@]}")
case "$level" in
  base) ;;
  full) pkgs+=("${full_pkgs[@]}" "${speed_pkgs[@]}") ;;
  test) pkgs+=("${full_pkgs[@]}" "${speed_pkgs[@]}" "${test_pkgs[@]}") ;;
  *) echo "install-deps: unknown level '$level' (base, full or test)" >&2; exit 2 ;;
esac
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  need_root
  echo "install-deps: installing ${missing[*]}" >&2
  # Keep package scripts from starting daemons (libvirtd would create virbr0 in the host namespace).
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 0755 "$policy"; created_policy=1
  fi
  trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
  export DEBIAN_FRONTEND=noninteractive
  stamp=/var/lib/apt/periodic/hsw-update-stamp
  if [ ! -e "$stamp" ] || [ -n "$(find "$stamp" -mmin +360 2>/dev/null)" ]; then
    apt-get update -qq
    mkdir -p "$(dirname "$stamp")"; touch "$stamp"
  fi
  # qemu-utils must come in the same call as qemu-system-x86, at Debian 12's version: the machine
  # image ships a backported qemu-utils that Breaks Debian 12's qemu-system-common (ENVIRONMENT.md).
  extra=()
  for p in "${missing[@]}"; do
    if [ "$p" = qemu-system-x86 ]; then
      v=$(apt-cache madison qemu-system-x86 | awk '{print $3; exit}')
      extra+=("qemu-utils=$v")
      dpkg-query -W -f="\${Status}" qemu-block-extra 2>/dev/null | grep -q "install ok" && extra+=("qemu-block-extra=$v")
    fi
  done
  apt-get install -y -qq --no-install-recommends --allow-downgrades "${missing[@]}" "${extra[@]}" >/dev/null
fi

if [ "$level" != base ]; then
  # Never autostart libvirt's default NAT network.
  rm -f /etc/libvirt/qemu/networks/autostart/default.xml 2>/dev/null || true
fi

# Rust components used by the test command.
if command -v rustup >/dev/null 2>&1; then
  for comp in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$comp" || rustup component add "$comp" || true
  done
fi
echo "install-deps: $level dependencies present" >&2
