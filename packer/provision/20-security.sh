#!/bin/bash
# The security baseline: root without a password, automatic security updates, nftables with a default
# policy, auditd. (sshd's keys-only settings are written by 90-cleanup.sh, after the last password login.)
set -euo pipefail
f=${HSW_FILES:?}

# root: no password at all (the installer made none: passwd/root-login false); logins as root need a key.
usermod --password '*' root

# Security updates every day.
install -m 0644 "$f/apt-20auto-upgrades" /etc/apt/apt.conf.d/20auto-upgrades
systemctl enable unattended-upgrades.service
systemctl enable apt-daily.timer apt-daily-upgrade.timer

# nftables: input policy drop, see the file. Checked here, loaded at every boot.
install -m 0644 "$f/nftables.conf" /etc/nftables.conf
nft -c -f /etc/nftables.conf
systemctl enable nftables.service

# auditd with a few watches on identity, sudo and sshd files.
install -m 0640 "$f/audit-50-hsw.rules" /etc/audit/rules.d/50-hsw.rules
systemctl enable auditd.service
echo "20-security: root locked, unattended-upgrades, nftables, auditd enabled"
