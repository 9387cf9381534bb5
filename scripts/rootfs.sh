#!/bin/bash
# rootfs stage, run inside the builder container with the build volume at /work.
#   rootfs.sh bootstrap   (network host)  mmdebstrap the profile's Debian into /work/rootfs
#   rootfs.sh finalise    (network none)  overlay, normalise, manifest, deterministic tarball
# Settings come from BK_* variables set by src/bootkiln/stages/rootfs.py.
set -euo pipefail

ROOT=/work/rootfs
OUT=/work/out
: "${SOURCE_DATE_EPOCH:?}" "${BK_SUITE:?}" "${BK_MIRROR:?}" "${BK_VARIANT:?}" "${BK_ARCH:?}" "${BK_COMPONENTS:?}"
export SOURCE_DATE_EPOCH LC_ALL=C.UTF-8 TZ=UTC
umask 022

bootstrap() {
    local -a args=(
        --mode=root
        --variant="$BK_VARIANT"
        --architectures="$BK_ARCH"
        --components="$BK_COMPONENTS"
        --aptopt='Acquire::Retries "3"'
        --aptopt='Acquire::http::Timeout "30"'
    )
    if [ -n "${BK_PACKAGES:-}" ]; then args+=(--include="$BK_PACKAGES"); fi
    if [ -n "${BK_SNAPSHOT:-}" ]; then
        # Snapshot Release files carry a Valid-Until long past; the pinned time is the point.
        args+=(--aptopt='Acquire::Check-Valid-Until "false"')
    fi
    rm -rf "$ROOT"
    mmdebstrap "${args[@]}" "$BK_SUITE" "$ROOT" "$BK_MIRROR"
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
    normalise
    rm -rf "$OUT" && mkdir -p "$OUT"
    dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f '${Package}\t${Version}\t${Architecture}\n' \
        | LC_ALL=C sort > "$OUT/packages.tsv"
    tar --create --file "$OUT/rootfs.tar" --directory "$ROOT" \
        --sort=name --numeric-owner --format=pax \
        --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
        --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime \
        --xattrs --xattrs-include='security.capability' \
        .
    echo "rootfs: $(wc -l < "$OUT/packages.tsv") packages, $(du -h "$OUT/rootfs.tar" | cut -f1) tarball"
}

case "${1:-}" in
    bootstrap) bootstrap ;;
    finalise) finalise ;;
    *) echo "usage: $0 bootstrap|finalise" >&2; exit 2 ;;
esac
