#!/usr/bin/env bash
# Builds a Debian 12 guest image for direct kernel boot, without an installer and without a network in the guest.
#
# Usage: scripts/build-image.sh [--role ROLE] [--out DIR] [--packages LIST] [--size SIZE] [--mirror URL] [--force]
#                               [--bundle DIR]
#   --role ROLE      hpc (default) or cloud: the extra packages are `packer/packages/list.sh --csv ROLE`; a cloud
#                    image also gets MLflow's venv in /opt/mlflow (packer/provision/46-mlflow.sh, from wheels
#                    pinned in packer/files/mlflow-requirements.txt and downloaded here with pip)
#   --bundle DIR     a Kubernetes bundle (`hsw-cli bundle build`): its bin/ into /usr/local/bin, its images/*.oci.tar
#                    and bundle.json into /var/lib/hsw/k8s/ (the key then covers bundle.json, which holds every
#                    file's sha256; each file is checked against it before it goes in, by the Packer template's
#                    packer/provision/45-k8s-bundle.sh); with --role cloud only
#   --out DIR        cache directory (default /var/cache/hsw/images, or $HSW_IMAGE_DIR)
#   --packages LIST  extra packages instead of the role's, comma or space separated ('' for none)
#   --size SIZE      size of the root file system (default 3G); grow it later with a larger qcow2 overlay
#   --mirror URL     Debian mirror (default http://deb.debian.org/debian; security from .../debian-security)
#   --force          rebuild even when the cache holds a complete image
#   --print-key      print the cache key for these options and exit
#   --check          exit 0 when the cache holds a complete image for these options (checked by sha256), 1 when
#                    not (saying why); never builds
#   --prune          remove the other images in DIR (older keys), keeping this one
#
# The package sets are the Packer template's (packer/packages/{common,hpc,cloud}.list, read only through
# packer/packages/list.sh; the contract is in packer/README.md), and the configuration files are installed from
# packer/files/ (install -m MODE, as the Packer provisioners do: see FILES below), so the two builders cannot
# drift apart.
#
# What it does: `mmdebstrap --mode=root --variant=apt` into a directory, a few settings (below), then
# `mke2fs -t ext4 -d ROOTFS` (no mount) and `qemu-img convert -O qcow2`; the kernel and initrd are copied out.
# Results go to DIR/<key>/ where <key> hashes the script version, the suite, the size, the sorted package list
# and the installed files (their contents, destinations and modes);
# a build whose DIR/<key>/manifest.json exists (written last) and whose files have the sha256 it records is reused
# (a file changed in place, even at the same size, is caught and the image rebuilt; files that are not root's 0644,
# as libvirt leaves a backing file it chowned to QEMU's user, are given back). On success it prints one line per file:
#   base=DIR/<key>/base.qcow2  kernel=DIR/<key>/vmlinuz  initrd=DIR/<key>/initrd.img  manifest=DIR/<key>/manifest.json
# Boot it with: kernel + initrd, cmdline `root=/dev/vda rw console=ttyS0 net.ifnames=0`, the qcow2 as virtio disk vda.
#
# The guest:
# - networking: cloud-init renders ifupdown (ENI) config; without a network-config in the seed its fallback is DHCP
#   on the first NIC, named eth0 (net.ifnames=0). A seed's network-config should match NICs by `macaddress` with
#   `set-name: eth0` (matching by name under ifupdown failed in earlier tests).
# - cloud-init: datasource_list [ NoCloud, None ]; the default user is `hsw` (sudo without password, no password,
#   keys only); `ssh_authorized_keys` in user-data go to it.
# - root: password locked; sshd takes keys only (PasswordAuthentication no, root only with a key).
# - SSH host keys are not in the image: each guest makes its own on first boot (cloud-init, then `ssh-keygen -A`).
# - munge: the key Debian makes at install time is removed (clones would share it); munge.service starts only once
#   /etc/munge/munge.key exists. Slurm daemons need their config before they start (Debian's units check for it).
# - no docs, man pages or locales; apt lists removed.
set -euo pipefail

SCRIPT_VERSION=8            # bump when the image content produced by this script changes
SUITE=bookworm
# e2fsprogs: fsck and resize2fs for the ext4 root (not in --variant=apt); dbus: hostnamectl, logind, systemctl --user.
BASE_PACKAGES=(linux-image-cloud-amd64 systemd-sysv udev cloud-init openssh-server netbase ifupdown
               isc-dhcp-client initramfs-tools iproute2 sudo python3 e2fsprogs dbus)
REPO="$(cd "$(dirname "$0")/.." && pwd)"
LIST_SH="$REPO/packer/packages/list.sh"
FILES_DIR="$REPO/packer/files"
# What is installed from packer/files/ (the same destinations and modes as packer/provision/*.sh):
# "FILE DESTINATION MODE", FILE relative to packer/files/. The munge and NFS server drop-ins only in images with
# those packages (see `wanted`).
FILES=(
  "sshd-10-hsw.conf /etc/ssh/sshd_config.d/10-hsw.conf 0644"
  "hsw-ssh-hostkeys.service /etc/systemd/system/hsw-ssh-hostkeys.service 0644"
  "cloud-init-90-hsw.cfg /etc/cloud/cloud.cfg.d/90-hsw.cfg 0644"
  "cloud-init-91-hsw-direct-boot.cfg /etc/cloud/cloud.cfg.d/91-hsw-direct-boot.cfg 0644"
  "network-interfaces /etc/network/interfaces 0644"
  "munge-10-hsw.conf /etc/systemd/system/munge.service.d/10-hsw.conf 0644"
  "nfs-10-hsw.conf /etc/nfs.conf.d/10-hsw.conf 0644"
  "mlflow-requirements.txt /opt/mlflow/requirements.txt 0644"
)

out="${HSW_IMAGE_DIR:-/var/cache/hsw/images}"
role=hpc
extra=""
extra_set=0
size=3G
mirror="http://deb.debian.org/debian"
security=""
force=0
print_key=0
check_only=0
prune=0
bundle=""

die() { echo "build-image: $*" >&2; exit 1; }
log() { printf 'build-image: %s\n' "$*" >&2; }
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out=$2; shift 2 ;;
    --out=*) out=${1#*=}; shift ;;
    --role) [ $# -ge 2 ] || die "--role needs hpc or cloud"; role=$2; shift 2 ;;
    --role=*) role=${1#*=}; shift ;;
    --packages) [ $# -ge 2 ] || die "--packages needs a list"; extra=$2; extra_set=1; shift 2 ;;
    --packages=*) extra=${1#*=}; extra_set=1; shift ;;
    --size) [ $# -ge 2 ] || die "--size needs a value"; size=$2; shift 2 ;;
    --size=*) size=${1#*=}; shift ;;
    --mirror) [ $# -ge 2 ] || die "--mirror needs a URL"; mirror=$2; shift 2 ;;
    --mirror=*) mirror=${1#*=}; shift ;;
    --bundle) [ $# -ge 2 ] || die "--bundle needs a directory"; bundle=$2; shift 2 ;;
    --bundle=*) bundle=${1#*=}; shift ;;
    --force) force=1; shift ;;
    --print-key) print_key=1; shift ;;
    --check) check_only=1; shift ;;
    --prune) prune=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

[[ "$out" != *[[:space:]]* ]] || die "--out '$out' must not contain white space (mmdebstrap hooks split on it)"
[[ "$size" =~ ^[0-9]+[KMGT]?$ ]] || die "--size '$size' is not a size like 3G"
[[ "$mirror" =~ ^https?://[A-Za-z0-9._:/-]+$ ]] || die "--mirror '$mirror' is not an http(s) URL"
security=""
case "$mirror" in */debian) security="${mirror%/debian}/debian-security" ;; esac

case "$role" in hpc|cloud) ;; *) die "--role '$role' is not hpc or cloud" ;; esac
[ -z "$bundle" ] || [ "$role" = cloud ] || die "--bundle goes into the cloud image only (--role cloud), not '$role'"
if [ "$extra_set" = 0 ]; then
  extra=$(bash "$LIST_SH" --csv "$role") || die "cannot read the $role package list ($LIST_SH --csv $role failed)"
fi

# The package list: base + extra, validated, sorted, deduplicated.
read -r -a extra_pkgs <<< "${extra//,/ }"
pkgs=()
for p in "${BASE_PACKAGES[@]}" "${extra_pkgs[@]}"; do
  [[ "$p" =~ ^[a-z0-9][a-z0-9+.-]+$ ]] || die "'$p' is not a Debian package name"
  pkgs+=("$p")
done
mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u)
pkg_csv=$(IFS=,; echo "${pkgs[*]}")

# Whether FILES' DESTINATION belongs in this image: the munge and NFS server drop-ins only with their packages
# (so that a change to one role's file leaves the other role's cache key alone).
has_pkg() { [[ ",$pkg_csv," == *",$1,"* ]]; }
# MLflow's venv (packer/provision/46-mlflow.sh) goes into cloud images that have Python's venv module.
mlflow_wanted() { [ "$role" = cloud ] && has_pkg python3-venv; }
wanted() {
  case "$1" in
    /etc/systemd/system/munge.service.d/*) has_pkg munge ;;
    /etc/nfs.conf.d/*) has_pkg nfs-kernel-server ;;
    /opt/mlflow/*) mlflow_wanted ;;
    *) return 0 ;;
  esac
}

# The installed files: one "DESTINATION MODE SHA256" line each, in FILES order.
files_sum=""
for entry in "${FILES[@]}"; do
  read -r src dst mode <<< "$entry"
  wanted "$dst" || continue
  [ -f "$FILES_DIR/$src" ] || die "$FILES_DIR/$src is missing (it is installed as $dst)"
  files_sum+="$dst $mode $(sha256sum < "$FILES_DIR/$src" | cut -d' ' -f1)"$'\n'
done

# The bundle: bundle.json names every file with its sha256, so its own hash stands for all of them.
bundle_sum=""
if [ -n "$bundle" ]; then
  [ -f "$bundle/bundle.json" ] || die "--bundle '$bundle' has no bundle.json (make one with hsw-cli bundle build)"
  bundle_sum=$(sha256sum < "$bundle/bundle.json" | cut -d' ' -f1)
fi

key=$(printf 'version=%s\nsuite=%s\nsize=%s\npackages=%s\nfiles=\n%s' "$SCRIPT_VERSION" "$SUITE" "$size" "$pkg_csv" \
        "$files_sum" | { cat; [ -z "$bundle_sum" ] || printf 'bundle=%s\n' "$bundle_sum"; } | sha256sum | cut -c1-16)
if [ "$print_key" = 1 ]; then echo "$key"; exit 0; fi

dest="$out/$key"
print_paths() {
  printf 'base=%s\nkernel=%s\ninitrd=%s\nmanifest=%s\n' \
    "$dest/base.qcow2" "$dest/vmlinuz" "$dest/initrd.img" "$dest/manifest.json"
}

# A cached image is complete when its manifest exists (written last) and every file it lists has the sha256 the
# manifest records (its content, not only its size). With `say`, the first reason it is not is logged.
complete() {
  local verbose=${1:-quiet} m="$dest/manifest.json" f want have n=0
  why() { [ "$verbose" = quiet ] || log "cached image $key: $*"; return 1; }
  [ -f "$m" ] || why "no manifest ($m): not built yet" || return 1
  command -v jq >/dev/null 2>&1 || why "jq is missing, so its manifest cannot be read" || return 1
  while IFS=$'\t' read -r f want; do
    n=$((n + 1))
    [[ "$f" =~ ^[a-z0-9._-]+$ ]] && [[ "$want" =~ ^[0-9a-f]{64}$ ]] \
      || why "its manifest lists '$f' without a sha256; rebuilding" || return 1
    [ -f "$dest/$f" ] || why "$f is missing; rebuilding" || return 1
    have=$(sha256sum < "$dest/$f" | cut -d' ' -f1)
    [ "$have" = "$want" ] || why "$f has sha256 $have, its manifest says $want; rebuilding" || return 1
  done < <(jq -r '.files[] | [.name, (.sha256 // "")] | @tsv' "$m" 2>/dev/null)
  [ "$n" -gt 0 ] || why "its manifest lists no files; rebuilding" || return 1
}

# Gives the cached files back to root, 0644, where they are not (libvirt's DAC driver chowns a backing file to
# QEMU's user while a VM runs, and does not give it back). Only as root; the content was checked by `complete`.
# Also removes libvirt's owner records (the trusted.libvirt.security.* attributes of remember_owner): a
# libvirtd killed while its VMs ran leaves them counting users that no longer exist, and the next VM on the
# file then fails to start ("Setting different DAC user or group on ... which is already in use"). The same
# rule as `forget_libvirt_labels` in hsw-cli/src/up/images.rs, which does it for the files `up` places.
own_cached() {
  local f
  [ "$(id -u)" -eq 0 ] || return 0
  for f in "$dest"/*; do
    [ -f "$f" ] || continue
    if [ "$(stat -c '%u %g %a' "$f")" != "0 0 644" ]; then
      log "cached image $key: $(basename "$f") was $(stat -c '%U:%G %a' "$f"); giving it back to root:root 0644"
      chown root:root "$f"
      chmod 0644 "$f"
    fi
  done
  # The paths are arguments, never program text.
  python3 - "$dest"/* <<'PY' || die "cannot remove libvirt's stale owner records in $dest"
import os, sys
for f in sys.argv[1:]:
    names = [n for n in os.listxattr(f, follow_symlinks=False) if n.startswith("trusted.libvirt.security.")]
    for n in names:
        os.removexattr(f, n, follow_symlinks=False)
    if names:
        print(f"build-image: {f}: removed libvirt's stale owner records ({len(names)} attributes)", file=sys.stderr)
PY
}

# Removes other keys' images; called with the lock held.
prune_others() {
  local d
  for d in "$out"/*/; do
    d=${d%/}
    [ "$d" = "$dest" ] && continue
    [[ "${d##*/}" =~ ^[0-9a-f]{16}$ ]] || continue
    log "pruning $d"
    rm -rf --one-file-system "$d"
  done
}

if [ "$check_only" = 1 ]; then
  if complete say; then log "cached image $key is complete"; exit 0; fi
  exit 1
fi
if [ "$force" = 0 ] && [ "$prune" = 0 ] && complete say; then
  own_cached
  log "cached image $key is complete (delete $dest or use --force to rebuild)"
  print_paths
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "run as root (mmdebstrap --mode=root)"
for tool in mmdebstrap mke2fs qemu-img jq sha256sum flock; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is missing: run scripts/install-deps.sh full"
done

mkdir -p "$out"
# One build at a time per cache directory; a second caller waits, then finds the finished image.
exec 9>"$out/.lock"
if ! flock -n 9; then
  log "another build is running in $out; waiting for it"
  flock 9
fi
# Holding the lock: any build directory is a crashed build's.
rm -rf --one-file-system "$out"/.build-*
if [ "$prune" = 1 ]; then prune_others; fi
if [ "$force" = 0 ] && complete; then
  own_cached
  log "cached image $key is complete"
  print_paths
  exit 0
fi

work=$(mktemp -d "$out/.build-$key.XXXXXX")
cleanup() { rm -rf --one-file-system "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building image $key: Debian $SUITE, ${#pkgs[@]} packages ($pkg_csv), root fs $size"
t0=$(date +%s)
rootfs="$work/rootfs"
# The .debs of the last build are kept in DIR/.debs, so that a rebuild with another package list downloads less.
mkdir -p "$out/.debs" "$work/debs"
# shellcheck disable=SC2016  # "$1" is for the hook's shell
mmdebstrap --mode=root --variant=apt --format=directory \
  --include="$pkg_csv" \
  --aptopt='Acquire::Languages "none"' \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
  --setup-hook="sync-in $out/.debs /var/cache/apt/archives/" \
  --customize-hook="sync-out /var/cache/apt/archives $work/debs" \
  "$SUITE" "$rootfs" \
  "deb $mirror $SUITE main" \
  "deb $mirror $SUITE-updates main" \
  ${security:+"deb $security $SUITE-security main"} >&2
log "rootfs done in $(( $(date +%s) - t0 )) s"
rm -rf --one-file-system "$out/.debs"
mv "$work/debs" "$out/.debs"

# --- settings inside the rootfs (plain files; no mount, no chroot needed except passwd) ---
r="$rootfs"
echo hsw-guest > "$r/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$r/etc/hosts"
printf '/dev/vda\t/\text4\trw,relatime,errors=remount-ro\t0\t1\n' > "$r/etc/fstab"

# The configuration files, from packer/files/ (see FILES). ifupdown reads what cloud-init's ENI renderer writes to
# interfaces.d; munge: no shared key in the image, and the unit waits for the one Ansible installs.
mkdir -p "$r/etc/network/interfaces.d"
for entry in "${FILES[@]}"; do
  read -r src dst mode <<< "$entry"
  wanted "$dst" || continue
  install -D -m "$mode" "$FILES_DIR/$src" "$r$dst"
done
rm -f "$r"/etc/ssh/ssh_host_* "$r/etc/munge/munge.key"
# The Kubernetes bundle, by the Packer template's own provisioner (every file checked against bundle.json).
if [ -n "$bundle" ]; then
  HSW_BUNDLE=$bundle HSW_ROOT=$r HSW_ROLE=$role bash "$REPO/packer/provision/45-k8s-bundle.sh" >&2 \
    || die "the Kubernetes bundle $bundle could not be installed (above)"
fi
# MLflow's tracking server, by the Packer template's own provisioner, from wheels downloaded here (pinned by sha256
# in packer/files/mlflow-requirements.txt, for the image's CPython 3.11 on x86_64 with glibc 2.36): the image root
# never reaches the network. pip's own cache keeps them for the next build.
if mlflow_wanted; then
  plats=()
  for m in $(seq 36 -1 5); do plats+=(--platform "manylinux_2_${m}_x86_64"); done
  plats+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64 --platform any)
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: --require-hashes \
    --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none "${plats[@]}" \
    -r "$FILES_DIR/mlflow-requirements.txt" -d "$work/wheels" >&2 \
    || die "pip download of $FILES_DIR/mlflow-requirements.txt failed (PyPI reachable? python3-pip installed?)"
  HSW_FILES=$FILES_DIR HSW_ROOT=$r HSW_WHEELS=$work/wheels HSW_ROLE=$role \
    bash "$REPO/packer/provision/46-mlflow.sh" >&2 || die "MLflow could not be installed into the image (above)"
  rm -rf --one-file-system "$work/wheels"
fi
# Prometheus: Debian's package enables it at install, which would run it with Debian's defaults on every cloud VM
# from boot (a third of a TCG guest's CPU); the monitoring playbook enables and starts it on the monitoring server
# only (as packer/provision/30-monitoring.sh does).
if [ -e "$r/lib/systemd/system/prometheus.service" ]; then
  systemctl --root="$r" --quiet disable prometheus.service
fi
# Host keys: cloud-init makes them; hsw-ssh-hostkeys.service makes any that are still missing before sshd starts.
mkdir -p "$r/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/hsw-ssh-hostkeys.service "$r/etc/systemd/system/multi-user.target.wants/"

# root: no password at all (locked).
usermod --root "$r" --password '*' root
# Identity that must differ per guest.
: > "$r/etc/machine-id"
rm -f "$r/var/lib/dbus/machine-id" "$r/var/lib/systemd/random-seed"
rm -rf "$r/var/lib/cloud" "$r/var/log/cloud-init"*.log
rm -rf "$r/var/cache/apt/"*.bin "$r/var/lib/apt/lists/"* "$r/tmp/"* "$r/var/tmp/"*

# --- kernel, initrd, disk ---
kernel=$(find "$r/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n1)
initrd=$(find "$r/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -n1)
{ [ -n "$kernel" ] && [ -n "$initrd" ]; } || die "no kernel or initrd in $r/boot (did linux-image-cloud-amd64 install?)"
kver=${kernel##*/vmlinuz-}
install -m 0644 "$kernel" "$work/vmlinuz"
install -m 0644 "$initrd" "$work/initrd.img"

dpkg-query --admindir="$r/var/lib/dpkg" -W -f='${Package}\t${Version}\n' | sort > "$work/packages.tsv"

t1=$(date +%s)
mke2fs -q -t ext4 -L root -d "$r" "$work/root.raw" "$size"
qemu-img convert -O qcow2 "$work/root.raw" "$work/base.qcow2"
rm -f "$work/root.raw"
rm -rf --one-file-system "$rootfs"
log "disk done in $(( $(date +%s) - t1 )) s"

# --- manifest (last: its presence marks the image complete) ---
files_json=$(for f in base.qcow2 vmlinuz initrd.img; do
  jq -n --arg name "$f" --arg sha256 "$(sha256sum "$work/$f" | cut -d' ' -f1)" \
        --argjson size "$(stat -c %s "$work/$f")" '{name: $name, size: $size, sha256: $sha256}'
done | jq -s .)
packages_json=$(jq -R -s 'split("\n") | map(select(length > 0) | split("\t") | {(.[0]): .[1]}) | add' \
  < "$work/packages.tsv")
rm -f "$work/packages.tsv"
jq -n --arg key "$key" --argjson script_version "$SCRIPT_VERSION" --arg suite "$SUITE" --arg size "$size" \
      --arg mirror "$mirror" --arg kernel_version "$kver" --arg built "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
      --arg cmdline "root=/dev/vda rw console=ttyS0 net.ifnames=0" \
      --argjson requested "$(printf '%s\n' "${pkgs[@]}" | jq -R . | jq -s .)" \
      --argjson files "$files_json" --argjson packages "$packages_json" \
      '{key: $key, script_version: $script_version, suite: $suite, root_size: $size, mirror: $mirror,
        built: $built, kernel_version: $kernel_version, cmdline: $cmdline, requested_packages: $requested,
        files: $files, packages: $packages}' > "$work/manifest.json.tmp"

# Publish: replace any incomplete previous attempt, then rename the finished directory into place.
rm -rf --one-file-system "$dest"
mv "$work/manifest.json.tmp" "$work/manifest.json"
# QEMU runs unprivileged and reads base.qcow2 as a backing file (and the kernel and initrd): world-readable.
chmod 0644 "$work"/base.qcow2 "$work"/vmlinuz "$work"/initrd.img "$work"/manifest.json
chmod 0755 "$work"
mv "$work" "$dest"
trap - EXIT
log "image $key built in $(( $(date +%s) - t0 )) s ($(du -h "$dest/base.qcow2" | cut -f1) qcow2)"
print_paths
