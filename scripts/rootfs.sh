#!/bin/bash
# rootfs stage, run inside the builder container with the build volume at /work.
#   rootfs.sh bootstrap   (network host)  mmdebstrap the profile's Debian into /work/rootfs
#   rootfs.sh finalise    (network none)  overlay, normalise, manifest, deterministic tarball
# Settings come from BK_* variables set by src/bootkiln/stages/rootfs.py, lists from files in /bootkiln/.
set -euo pipefail

ROOT=/work/rootfs
OUT=/work/out
: "${SOURCE_DATE_EPOCH:?}" "${BK_SUITE:?}" "${BK_VARIANT:?}" "${BK_ARCH:?}"
export SOURCE_DATE_EPOCH LC_ALL=C.UTF-8 TZ=UTC
umask 022

bootstrap() {
    local -a args=(
        --mode=root
        --variant="$BK_VARIANT"
        --architectures="$BK_ARCH"
        --aptopt='Acquire::Retries "5"'
        --aptopt='Acquire::http::Timeout "30"'
        # Keep the package lists until finalise has recorded each .deb's sha256 in the manifest.
        --skip=cleanup/apt/lists
    )
    # rootfs.packages, one a line: --include in chunks, since one argument may not exceed 128 KiB.
    local -a packages
    mapfile -t packages < /bootkiln/packages.txt
    local i
    for (( i = 0; i < ${#packages[@]}; i += 1000 )); do
        args+=(--include="$(IFS=,; echo "${packages[*]:i:1000}")")
    done
    # Arguments may take a quarter of the stack limit (at most 6 MiB): room for a long list.
    ulimit -S -s 65536 2>/dev/null || true
    rm -rf "$ROOT"
    # The sources list (mirror or snapshot, components) is written by bootkiln: see archive.sources_list.
    mmdebstrap "${args[@]}" "$BK_SUITE" "$ROOT" /bootkiln/apt/sources.list
}

# name, version, architecture and the sha256 of the .deb (from the signed Packages index), a line each.
package_manifest() {
    local -a installed
    mapfile -t installed < <(dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f '${Package}:${Architecture}=${Version}\n')
    chroot "$ROOT" apt-cache show --no-all-versions "${installed[@]}" | awk '
        /^Package: /      { package = $2 }
        /^Version: /      { version = $2 }
        /^Architecture: / { arch = $2 }
        /^SHA256: /       { sha = $2 }
        /^$/ { if (package != "") print package "\t" version "\t" arch "\t" sha; package = sha = "" }
        END  { if (package != "") print package "\t" version "\t" arch "\t" sha }' | LC_ALL=C sort -u
}

normalise() {
    # Files that record the build machine or the build time rather than the image content.
    : > "$ROOT/etc/machine-id"
    rm -f "$ROOT/var/lib/dbus/machine-id"
    rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/* "$ROOT"/var/cache/debconf/*-old \
           "$ROOT"/var/lib/dpkg/*-old "$ROOT"/var/cache/ldconfig/aux-cache "$ROOT"/var/cache/man/* \
           "$ROOT"/etc/ssh/ssh_host_*_key "$ROOT"/etc/ssh/ssh_host_*_key.pub \
           "$ROOT"/var/lib/systemd/random-seed "$ROOT"/etc/passwd- "$ROOT"/etc/group- \
           "$ROOT"/etc/shadow- "$ROOT"/etc/gshadow- "$ROOT"/etc/subuid- "$ROOT"/etc/subgid- \
           "$ROOT"/tmp/* "$ROOT"/var/tmp/* "$ROOT"/root/.bash_history
    mkdir -p "$ROOT/var/lib/apt/lists/partial"
    find "$ROOT/var/log" -type f -delete
    # shadow's "last changed" field counts days since 1970: pin it to the archive's day.
    local day=$(( SOURCE_DATE_EPOCH / 86400 ))
    if [ -f "$ROOT/etc/shadow" ]; then
        awk -v day="$day" 'BEGIN { FS = OFS = ":" } $3 != "" { $3 = day } { print }' \
            "$ROOT/etc/shadow" > "$ROOT/etc/shadow.new"
        cat "$ROOT/etc/shadow.new" > "$ROOT/etc/shadow"
        rm "$ROOT/etc/shadow.new"
    fi
}

finalise() {
    test -d "$ROOT/etc" || { echo "rootfs.sh: $ROOT is not a bootstrapped tree" >&2; exit 1; }
    if [ -s /bootkiln/overlay.tar ]; then
        # Modes and owners come from the archive; existing directories keep theirs (/tmp stays 1777).
        tar -xpf /bootkiln/overlay.tar -C "$ROOT" --numeric-owner --same-owner --no-overwrite-dir
    fi
    rm -rf "$OUT" && mkdir -p "$OUT"
    package_manifest > "$OUT/packages.tsv"
    local listed installed
    listed=$(cut -f1 "$OUT/packages.tsv" | sort -u | wc -l)
    installed=$(dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f '${Package}\n' | sort -u | wc -l)
    if [ "$listed" != "$installed" ] || cut -f4 "$OUT/packages.tsv" | grep -qvE '^[0-9a-f]{64}$'; then
        echo "rootfs.sh: the package index does not cover every installed package ($listed of $installed)" >&2
        exit 1
    fi
    normalise
    # shellcheck source=lib/reproducible-tar.sh
    . /bootkiln/lib/reproducible-tar.sh
    reproducible_tar "$OUT/rootfs.tar" "$ROOT"
    echo "rootfs: $(wc -l < "$OUT/packages.tsv") packages, $(du -h "$OUT/rootfs.tar" | cut -f1) tarball"
}

if [ "$BK_ARCH" != "${BK_BUILDER_ARCH:-$BK_ARCH}" ]; then
    # Both steps run the target's binaries in a chroot, under qemu-user. Since Linux 6.7 binfmt_misc
    # entries live only as long as a mount of it: where the host keeps none, register in this container.
    /bootkiln/binfmt.sh "$BK_ARCH"
fi

case "${1:-}" in
    bootstrap) bootstrap ;;
    finalise) finalise ;;
    *) echo "usage: $0 bootstrap|finalise" >&2; exit 2 ;;
esac
