#!/usr/bin/env bash
# Prints the package set of an hsw image role: packer/packages/common.list followed by ROLE.list.
#
# Usage: packer/packages/list.sh [--csv|--lines] ROLE...
#   ROLE     hpc | cloud | common (common.list alone); several roles are merged
#   --lines  one package per line (default)
#   --csv    one line, comma separated (what mmdebstrap --include and build-image.sh --packages take)
#
# Format of a list (the contract, see packer/README.md): one Debian package name per line; '#' starts a
# comment to the end of the line; blank lines and surrounding white space are ignored; names must match
# ^[a-z0-9][a-z0-9+.-]+$. Output keeps the first-seen order (common first) and drops duplicates.
# Exits 1 with "FILE:LINE: ..." on stderr when a line is not a package name or a list is missing.
set -euo pipefail

dir=$(cd "$(dirname "$0")" && pwd)
mode=lines
roles=()
for arg in "$@"; do
  case "$arg" in
    --csv) mode=csv ;;
    --lines) mode=lines ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "list.sh: unknown option '$arg'" >&2; exit 2 ;;
    *) [[ "$arg" =~ ^[a-z][a-z0-9-]*$ ]] || { echo "list.sh: bad role '$arg'" >&2; exit 2; }
       roles+=("$arg") ;;
  esac
done
[ ${#roles[@]} -gt 0 ] || { echo "usage: list.sh [--csv|--lines] ROLE..." >&2; exit 2; }

files=("$dir/common.list")
for r in "${roles[@]}"; do
  [ "$r" = common ] || files+=("$dir/$r.list")
done

declare -A seen=()
out=()
bad=0
for f in "${files[@]}"; do
  [ -f "$f" ] || { echo "list.sh: $f: no such list" >&2; exit 1; }
  n=0
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    line=${line%%#*}
    line=${line#"${line%%[![:space:]]*}"}
    line=${line%"${line##*[![:space:]]}"}
    [ -n "$line" ] || continue
    if ! [[ "$line" =~ ^[a-z0-9][a-z0-9+.-]+$ ]]; then
      echo "$f:$n: '$line' is not a Debian package name" >&2
      bad=1
      continue
    fi
    [ -n "${seen[$line]:-}" ] && continue
    seen[$line]=1
    out+=("$line")
  done < "$f"
done
[ "$bad" = 0 ] || exit 1

if [ "$mode" = csv ]; then
  (IFS=,; echo "${out[*]}")
else
  printf '%s\n' "${out[@]}"
fi
