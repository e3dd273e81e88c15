#!/bin/bash
# Cloud role: hsw's offline Kubernetes bundle (`hsw-cli bundle build`), when one is given. Its bin/* go to
# /usr/local/bin, its images/*.oci.tar and bundle.json to /var/lib/hsw/k8s/ (the k8s playbook imports the images
# into containerd and runs kubeadm from them, never pulling). Every file is checked against bundle.json's sha256
# first; bundle.json names only plain bin/NAME and images/NAME paths.
# One script for both image builders: the Packer template runs it in the build VM (HSW_BUNDLE=/tmp/hsw-bundle,
# uploaded from var.k8s_bundle), scripts/build-image.sh --bundle DIR on its image root (HSW_ROOT).
# Environment: HSW_BUNDLE  the bundle directory; nothing is done when it holds no bundle.json
#              HSW_ROOT    the image's root (default: /, the running system)
#              HSW_ROLE    the image's role (a bundle in any image but cloud is refused)
set -euo pipefail
b=${HSW_BUNDLE:-}
r=${HSW_ROOT:-}
die() { echo "45-k8s-bundle: $*" >&2; exit 1; }

if [ -z "$b" ] || [ ! -f "$b/bundle.json" ]; then
  echo "45-k8s-bundle: no Kubernetes bundle given (the k8s playbook then needs kubeadm from elsewhere)"
  exit 0
fi
[ "${HSW_ROLE:-cloud}" = cloud ] || die "a Kubernetes bundle goes into the cloud image only, not '${HSW_ROLE}'"

# The release, then "PATH<TAB>SHA256" of every binary and image (python3: on the build host and in every Debian
# cloud image, cloud-init needs it).
list=$(python3 - "$b/bundle.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print(m["kubernetes"])
for e in m["binaries"] + m["images"]:
    print(f"{e['path']}\t{e['sha256']}")
PY
) || die "$b/bundle.json cannot be read (make it with hsw-cli bundle build)"

install -d -m 0755 "$r/usr/local/bin" "$r/var/lib/hsw/k8s/images"
version=$(head -n1 <<< "$list")
while IFS=$'\t' read -r path want; do
  if ! [[ "$path" =~ ^(bin|images)/[A-Za-z0-9._-]+$ && "$want" =~ ^[0-9a-f]{64}$ ]]; then
    die "$b/bundle.json lists '$path' (sha256 '$want'): not a bundle file"
  fi
  [ "$(sha256sum < "$b/$path" | cut -d' ' -f1)" = "$want" ] \
    || die "$b/$path is not what bundle.json says: rebuild it with hsw-cli bundle build --force"
  case "$path" in
    bin/*) install -m 0755 "$b/$path" "$r/usr/local/bin/${path#bin/}" ;;
    images/*) install -m 0644 "$b/$path" "$r/var/lib/hsw/k8s/$path" ;;
  esac
done < <(tail -n +2 <<< "$list")
install -m 0644 "$b/bundle.json" "$r/var/lib/hsw/k8s/bundle.json"
echo "45-k8s-bundle: Kubernetes bundle $version installed from $b"
