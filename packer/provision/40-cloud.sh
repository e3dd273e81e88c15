#!/bin/bash
# Cloud role: Kubernetes prerequisites (kernel modules, sysctls, no swap) and containerd with the systemd
# cgroup driver (hsw's Ansible role rewrites config.toml the same way, with the cluster's sandbox image).
set -euo pipefail
f=${HSW_FILES:?}

install -m 0644 "$f/modules-load-k8s.conf" /etc/modules-load.d/k8s.conf
install -m 0644 "$f/sysctl-99-k8s.conf" /etc/sysctl.d/99-k8s.conf
modprobe overlay
modprobe br_netfilter
sysctl --system >/dev/null
[ "$(sysctl -n net.ipv4.ip_forward)" = 1 ]
[ "$(sysctl -n net.bridge.bridge-nf-call-iptables)" = 1 ]

# Swap: the installer made no swap partition; make sure nothing else turns one on.
swapoff -a
sed -i -E '/^[^#][^[:space:]]*[[:space:]]+[^[:space:]]+[[:space:]]+swap[[:space:]]/d' /etc/fstab
if [ -n "$(swapon --show --noheadings)" ] || grep -Eq '^[^#]\S*\s+\S+\s+swap\s' /etc/fstab; then
  echo "40-cloud: swap is still configured" >&2; exit 1
fi

mkdir -p /etc/containerd
containerd config default | sed 's/SystemdCgroup = false/SystemdCgroup = true/' > /etc/containerd/config.toml
grep -q 'SystemdCgroup = true' /etc/containerd/config.toml
systemctl enable containerd.service
runc --version
echo "40-cloud: modules, sysctls, no swap, containerd (SystemdCgroup) enabled"
