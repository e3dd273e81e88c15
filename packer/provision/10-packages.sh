#!/bin/bash
# Installs the image's package set. HSW_PACKAGES (space separated) is what the template read from
# packer/packages/common.list + ROLE.list; the installer's pkgsel/include installed the same set already, so
# this is a check that also catches a preseed that did not take. Then the whole system is upgraded.
set -euo pipefail
: "${HSW_PACKAGES:?the template passes the package set}"
export DEBIAN_FRONTEND=noninteractive
read -r -a pkgs <<< "$HSW_PACKAGES"
for p in "${pkgs[@]}"; do
  [[ "$p" =~ ^[a-z0-9][a-z0-9+.-]+$ ]] || { echo "10-packages: '$p' is not a Debian package name" >&2; exit 1; }
done
echo "10-packages: ${#pkgs[@]} packages for role ${HSW_ROLE:-?}: ${pkgs[*]}"
apt-get update
apt-get -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold full-upgrade
apt-get -y --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  install "${pkgs[@]}"
missing=()
for p in "${pkgs[@]}"; do
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] || { echo "10-packages: not installed: ${missing[*]}" >&2; exit 1; }
echo "10-packages: all ${#pkgs[@]} installed"
