#!/bin/bash
# Last provisioner: sshd keys only, cloud-init ready for the first boot, per-machine identity removed, caches
# emptied. sshd is not restarted: the build's own session keeps working until the template's shutdown_command
# removes the SSH host keys and the build user.
set -euo pipefail
f=${HSW_FILES:?}
export DEBIAN_FRONTEND=noninteractive

# SSH: keys only from now on (first match wins in sshd_config.d, so 10- comes before cloud-init's 50-).
install -m 0644 "$f/sshd-10-hsw.conf" /etc/ssh/sshd_config.d/10-hsw.conf
sshd -t
# Host keys: deleted by shutdown_command; cloud-init makes new ones, this unit makes any still missing.
install -m 0644 "$f/hsw-ssh-hostkeys.service" /etc/systemd/system/hsw-ssh-hostkeys.service
systemctl enable hsw-ssh-hostkeys.service

# cloud-init: NoCloud seed from hsw, default user hsw (keys only), network from the seed or DHCP on eth0.
install -m 0644 "$f/cloud-init-90-hsw.cfg" /etc/cloud/cloud.cfg.d/90-hsw.cfg
# ifupdown: loopback only, eth0 from cloud-init (its ENI renderer writes interfaces.d).
install -m 0644 "$f/network-interfaces" /etc/network/interfaces
mkdir -p /etc/network/interfaces.d
# Same NIC names as the images of scripts/build-image.sh (eth0), and a serial console.
sed -i -E 's/^GRUB_CMDLINE_LINUX=.*/GRUB_CMDLINE_LINUX="net.ifnames=0 console=tty0 console=ttyS0,115200n8"/' /etc/default/grub
# The installer keeps its own kernel-line parameters after "---"; none of the build's may stay.
sed -i -E 's/^GRUB_CMDLINE_LINUX_DEFAULT=.*/GRUB_CMDLINE_LINUX_DEFAULT="quiet"/' /etc/default/grub
update-grub
if grep -q 'passwd/' /boot/grub/grub.cfg; then echo '90-cleanup: the build password is on the kernel line' >&2; exit 1; fi
rm -f /etc/cloud/cloud-init.disabled
cloud-init clean --logs --seed

# apt: no lists, no caches.
apt-get -y autoremove --purge
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin

# Identity that must differ per VM.
truncate -s 0 /etc/machine-id
[ -L /var/lib/dbus/machine-id ] || rm -f /var/lib/dbus/machine-id
rm -f /var/lib/systemd/random-seed

# Logs and leftovers of the installer and of this build.
rm -rf /var/log/installer /tmp/* /var/tmp/*
journalctl --rotate >/dev/null
journalctl --vacuum-time=1s >/dev/null
find /var/log -path /var/log/journal -prune -o -type f \( -name '*.gz' -o -name '*.[0-9]' \) -delete
find /var/log -path /var/log/journal -prune -o -type f -exec truncate -s 0 {} +
rm -f /root/.bash_history
echo "90-cleanup: sshd keys only, cloud-init clean, machine-id empty, apt lists removed"
