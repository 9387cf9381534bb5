#!/bin/bash
# busybox stage, run inside the builder container with the build volume at /work.
#   busybox.sh fetch     (network host)  apt-get source busybox from the profile's archive
#   busybox.sh compile   (network none)  a static (musl) busybox from /bootkiln/busybox.config
# apt-get source checks every file against the Sources index signed in InRelease; dpkg-source then
# re-checks the .dsc's strong checksums while unpacking and applies Debian's patches.
set -euo pipefail
export LC_ALL=C TZ=UTC
umask 022
unset CFLAGS CPPFLAGS LDFLAGS CC CROSS_COMPILE ARCH MAKEFLAGS
: "${SOURCE_DATE_EPOCH:?}"
SRC=/work/src
OUT=/work/out

fetch() {
    # shellcheck source=lib/archive-apt.sh
    . /bootkiln/lib/archive-apt.sh
    archive_apt_update with-sources
    rm -rf /work/dl "$SRC"
    apt_download_dir /work/dl
    cd /work/dl
    apt-get "${ARCHIVE_APT[@]}" -q source --download-only busybox
    dpkg-source --require-strong-checksums -x ./busybox_*.dsc "$SRC"
    sha256sum ./busybox_*.dsc ./busybox_*.tar.* | sed 's| \./| |' > /work/source.sha256
    # A dpkg-source killed half-way leaves a partly patched tree without complaint: count patches.
    if [ -f "$SRC/debian/patches/series" ]; then
        want=$(grep -cv '^\s*\(#\|$\)' "$SRC/debian/patches/series" || true)
        have=$(wc -l < "$SRC/.pc/applied-patches" 2>/dev/null || echo 0)
        [ "$want" = "$have" ] || { echo "busybox.sh: $have of $want Debian patches applied" >&2; exit 1; }
    fi
}

compile() {
    cd "$SRC"
    local version
    version=$(dpkg-parsechangelog -SVersion)
    export KCONFIG_NOTIMESTAMP=1   # no timestamp in .config or autoconf.h
    cp /bootkiln/busybox.config .config
    (yes "" || true) | make -s oldconfig > /dev/null
    if ! diff -u /bootkiln/busybox.config .config; then
        echo "busybox.sh: the configuration is stale for busybox $version (diff above):" \
             "regenerate it with configs/busybox-gen-config.sh" >&2
        exit 3
    fi
    # musl-gcc has no kernel headers: borrow linux-libc-dev's through a private include folder.
    rm -rf /work/kinc && mkdir /work/kinc
    for dir in linux asm-generic mtd scsi; do ln -s "/usr/include/$dir" "/work/kinc/$dir"; done
    ln -s "/usr/include/$(gcc -dumpmachine)/asm" /work/kinc/asm
    # BB_EXTRA_VERSION replaces the build time in the banner (Debian's version.patch).
    make -j"$(nproc)" busybox CC=musl-gcc KCONFIG_NOTIMESTAMP=1 \
        BB_EXTRA_VERSION="bootkiln Debian $version" \
        CONFIG_EXTRA_CFLAGS="-ffile-prefix-map=/work=/build -isystem /work/kinc"

    local dynamic
    dynamic=$(readelf -d busybox 2>&1 || true)
    case "$dynamic" in *"no dynamic section"*) ;; *) echo "busybox.sh: busybox is not static" >&2; exit 1 ;; esac
    if readelf -lW busybox | grep -q INTERP; then echo "busybox.sh: busybox has an interpreter" >&2; exit 1; fi
    # Without bzip2 the build "succeeds" with empty --help texts.
    local usage
    usage=$(./busybox ls --help 2>&1 || true)
    case "$usage" in *"Usage: ls"*) ;; *) echo "busybox.sh: usage texts missing" >&2; exit 1 ;; esac

    rm -rf "$OUT" && mkdir -p "$OUT"
    install -m 0755 busybox "$OUT/busybox"
    ./busybox --list-full | LC_ALL=C sort > "$OUT/applets.txt"
    echo "$version" > "$OUT/version.txt"
    cp /work/source.sha256 "$OUT/source.sha256"
    dpkg-query -W -f '${Package}\t${Version}\n' gcc-12 binutils musl-dev linux-libc-dev make > "$OUT/toolchain.tsv"
    echo "busybox: $version, $(stat -c %s busybox) bytes, $(wc -l < "$OUT/applets.txt") applets"
}

case "${1:-}" in
    fetch) fetch ;;
    compile) compile ;;
    *) echo "usage: $0 fetch|compile" >&2; exit 2 ;;
esac
