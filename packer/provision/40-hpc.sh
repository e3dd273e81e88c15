#!/bin/bash
# HPC role: Munge without a key (one per cluster, installed by hsw's Ansible role), Slurm daemons that wait
# for their configuration.
set -euo pipefail
f=${HSW_FILES:?}

# Debian's munge package made a key at install time; every clone of this image would share it.
rm -f /etc/munge/munge.key
install -D -m 0644 "$f/munge-10-hsw.conf" /etc/systemd/system/munge.service.d/10-hsw.conf
# The NFS server answers NFSv4 only.
install -D -m 0644 "$f/nfs-10-hsw.conf" /etc/nfs.conf.d/10-hsw.conf

# Slurm: Debian's units start only once /etc/slurm/slurm.conf exists; Ansible enables the right daemon per host.
for unit in slurmd slurmctld; do
  systemctl cat "$unit.service" | grep -q 'ConditionPathExists=.*slurm.conf' \
    || echo "40-hpc: warning: $unit.service has no ConditionPathExists on slurm.conf" >&2
done

command -v mpirun >/dev/null
command -v mount.nfs >/dev/null
sinfo --version
echo "40-hpc: munge key removed, NFS server v4 only, Slurm and MPI present"
