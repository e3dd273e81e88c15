#!/usr/bin/env bash
# Release packaging of terraform-provider-hsw for this machine's platform, in the layouts Terraform and OpenTofu
# install from:
#
#   OUT/terraform-provider-hsw_<v>_<os>_<arch>.zip       the package (terraform-provider-hsw_v<v>, mode 0755)
#   OUT/terraform-provider-hsw_<v>_SHA256SUMS            its sha256 (`sha256sum -c` format): with the zip and the
#   OUT/terraform-provider-hsw_<v>_manifest.json         manifest (protocol 6.0), what a private registry serves
#                                                        (sign the SHA256SUMS with your registry's GPG key there)
#   OUT/mirror/<host>/hyperscaler/hsw/...                a packed filesystem mirror (`terraform init -plugin-dir
#                                                        OUT/mirror`, or `filesystem_mirror { path = ... }`) that
#                                                        is also a network mirror (`index.json`, `<v>.json`) when
#                                                        served over https; <host> is registry.terraform.io and
#                                                        registry.opentofu.org
#
# Usage: scripts/release.sh [--bin-dir DIR] [--out DIR]
#   --bin-dir DIR  take hsw-cli and terraform-provider-hsw from DIR instead of building them
#                  (`cargo build --release --locked --bin hsw-cli --bin terraform-provider-hsw`)
#   --out DIR      where to write (default target/release-artifacts); the files it writes are replaced
# The version, platform and file names come from `hsw-cli provider layout` (one place: provider_mirror.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
bin_dir="" out="target/release-artifacts"
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) [ $# -ge 2 ] || usage; bin_dir=$2; shift 2 ;;
    --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "release: unknown argument '$1'" >&2; usage ;;
  esac
done
command -v zip >/dev/null || { echo "release: zip is missing: run scripts/install-deps.sh base (or apt-get install zip)" >&2; exit 2; }

if [ -z "$bin_dir" ]; then
  cargo build --release --locked -p hsw-cli -p terraform-provider-hsw --bin hsw-cli --bin terraform-provider-hsw
  bin_dir=target/release
fi
for b in hsw-cli terraform-provider-hsw; do
  [ -x "$bin_dir/$b" ] || { echo "release: $bin_dir/$b is not an executable: build it or give --bin-dir" >&2; exit 2; }
done

declare -A layout
while read -r key value; do layout[$key]=$value; done < <("$bin_dir/hsw-cli" provider layout)
version=${layout[version]} platform=${layout[platform]} zip_name=${layout[zip]}

mkdir -p "$out"
out=$(cd "$out" && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# The package: the executable alone, with a fixed time stamp and no extra attributes, so a rebuild of the
# same binary gives the same zip (and the same sha256).
install -m 0755 "$bin_dir/terraform-provider-hsw" "$stage/${layout[executable]}"
TZ=UTC touch -d '1980-01-01 00:00:00' "$stage/${layout[executable]}"
rm -f "$out/$zip_name"
(cd "$stage" && TZ=UTC zip -q -X -D "$out/$zip_name" "${layout[executable]}")
sha=$(sha256sum "$out/$zip_name" | cut -d' ' -f1)
printf '%s  %s\n' "$sha" "$zip_name" > "$out/${layout[sums]}"
printf '{\n  "version": 1,\n  "metadata": {\n    "protocol_versions": ["6.0"]\n  }\n}\n' > "$out/${layout[manifest]}"

# The mirror: HOST/NAMESPACE/TYPE/<zip> (packed filesystem layout) plus the network mirror protocol's JSON.
for host in registry.terraform.io registry.opentofu.org; do
  d="$out/mirror/$host/${layout[namespace_type]}"
  mkdir -p "$d"
  rm -f "$d/$zip_name"
  ln "$out/$zip_name" "$d/$zip_name" 2>/dev/null || cp "$out/$zip_name" "$d/$zip_name"
  printf '{\n  "versions": {\n    "%s": {}\n  }\n}\n' "$version" > "$d/index.json"
  printf '{\n  "archives": {\n    "%s": {\n      "url": "%s",\n      "hashes": ["zh:%s"]\n    }\n  }\n}\n' \
    "$platform" "$zip_name" "$sha" > "$d/$version.json"
done

echo "release: terraform-provider-hsw $version for $platform in $out"
echo "  $zip_name (sha256 $sha)"
echo "  ${layout[sums]}, ${layout[manifest]} (protocol 6.0)"
echo "  mirror/: terraform init -plugin-dir $out/mirror, or provider_installation { filesystem_mirror { path = \"$out/mirror\" } }"
