#!/bin/bash
# online-tools stage, run inside the builder container (network host): the .deb files an online
# install unpacks into memory before it runs debootstrap (lvm2, fdisk, mkfs, debootstrap, perl-base,
# gpgv and the archive keyring, and everything they depend on), pinned by size and sha256.
# The installer fetches each from the mirror and checks it before unpacking it; debootstrap then
# checks the archive's signature itself, so only the bootstrap tools are pinned, not the install.
# Settings: BK_TOOLS (space separated packages). Output: /work/out/online-tools.txt, one
# "POOL-PATH SIZE SHA256" line per package, sorted.
set -euo pipefail
export LC_ALL=C TZ=UTC
: "${BK_TOOLS:?}"
OUT=/work/out
rm -rf "$OUT" && mkdir -p "$OUT" /work/empty
# shellcheck source=lib/archive-apt.sh
. /bootkiln/lib/archive-apt.sh
archive_apt_update
# An empty dpkg status: apt resolves the whole closure, as for an empty root.
: > /work/empty/status
APT=("${ARCHIVE_APT[@]}" -o Dir::State::status=/work/empty/status -o APT::Install-Recommends=false
     -o Debug::NoLocking=true)
apt-get "${APT[@]}" --print-uris -qq install $BK_TOOLS > /work/uris
# apt prints its strongest hash (SHA512); the installer's busybox checks SHA256. Download the files
# (apt verifies them against the signed index) and hash them here.
apt_download_dir /work/debs
apt-get "${APT[@]}" -o Dir::Cache::Archives=/work/debs -q -y --download-only install $BK_TOOLS > /dev/null
while read -r url file size _; do
    url=${url//\'/}
    path=${url#*/pool/}
    [ "$path" != "$url" ] || { echo "online-tools.sh: not a pool URL: $url" >&2; exit 1; }
    deb=/work/debs/$file
    [ -f "$deb" ] || deb=/work/debs/$(printf '%b' "${file//%/\\x}")
    [ -f "$deb" ] || { echo "online-tools.sh: apt did not download $file" >&2; exit 1; }
    [ "$(stat -c %s "$deb")" = "$size" ] || { echo "online-tools.sh: $file has the wrong size" >&2; exit 1; }
    echo "pool/$path $size $(sha256sum "$deb" | cut -d' ' -f1)"
done < /work/uris | sort > "$OUT/online-tools.txt"
echo "online tools: $(wc -l < "$OUT/online-tools.txt") packages, $(awk '{ s += $2 } END { printf "%.1f MB", s / 1e6 }' "$OUT/online-tools.txt")"
