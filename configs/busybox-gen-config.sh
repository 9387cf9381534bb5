#!/bin/bash
# Regenerate busybox.config from busybox.fragment (runs INSIDE the builder container).
# usage: gen-config.sh <unpacked busybox source dir> <fragment> <output .config>
# Method: start from `make defconfig` (upstream defaults for every feature),
# switch OFF every applet symbol (from the //applet:IF_xxx( annotations) that the
# fragment does not mention, apply the fragment on top, and let `make oldconfig`
# resolve dependencies. Features of the kept applets keep their defconfig values.
set -euo pipefail
src=$1 frag=$(readlink -f "$2") out=$3
export KCONFIG_NOTIMESTAMP=1 LC_ALL=C
work=$(mktemp -d)
cp -a "$src"/. "$work"/
cd "$work"
make -s defconfig >/dev/null
fsyms=$(sed -nE 's/^(# )?CONFIG_([A-Za-z0-9_]+)[= ].*/\2/p' "$frag" | sort -u)
asyms=$(grep -rhoE '^//applet:(IF_[A-Z0-9_]+\()+' --include='*.c' --include='*.h' . |
        grep -oE 'IF_[A-Z0-9_]+' | sed 's/^IF_//' | sort -u)
for s in $(comm -23 <(echo "$asyms") <(echo "$fsyms")); do
  sed -i -E "s/^CONFIG_${s}=y$/# CONFIG_${s} is not set/" .config
done
for s in $fsyms; do sed -i -E "/^(# )?CONFIG_${s}[= ]/d" .config; done
grep -E '^(# )?CONFIG_' "$frag" >> .config
(yes "" || true) | make oldconfig >/dev/null
# verify the fragment survived dependency resolution
rc=0
while IFS= read -r line; do
  case $line in
    CONFIG_*) grep -qxF "$line" .config || { echo "MISMATCH: wanted '$line', got: $(grep -E "^(# )?${line%%=*}[= ]" .config || echo absent)"; rc=1; } ;;
    "# CONFIG_"*) s=${line#\# }; s=${s%% *}; ! grep -qE "^${s}=" .config || { echo "MISMATCH: wanted $s off"; rc=1; } ;;
  esac
done < "$frag"
cp .config "$out"
rm -rf "$work"
exit $rc
