#!/bin/bash
# busybox stage, run inside the builder container with the build volume at /work.
#   busybox.sh fetch     (network host)  apt-get source busybox from the profile's archive
#   busybox.sh compile   (network none)  a static busybox from /bootkiln/busybox.config: musl when the
#                                        builder is the target (BK_ARCH = BK_BUILDER_ARCH), else cross-compiled
# apt-get source checks every file against the Sources index signed in InRelease; dpkg-source then
# re-checks the .dsc's strong checksums while unpacking and applies Debian's patches.
set -euo pipefail
export LC_ALL=C TZ=UTC
umask 022
unset CFLAGS CPPFLAGS LDFLAGS CC CROSS_COMPILE ARCH MAKEFLAGS
: "${SOURCE_DATE_EPOCH:?}" "${BK_ARCH:?}" "${BK_BUILDER_ARCH:?}"
case "$BK_ARCH" in amd64) TRIPLET=x86_64-linux-gnu ;; arm64) TRIPLET=aarch64-linux-gnu ;;
    *) echo "busybox.sh: no toolchain for $BK_ARCH" >&2; exit 3 ;; esac
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

# The build flags both ways share. BB_EXTRA_VERSION replaces the build time in the banner (Debian's
# version.patch).
native_compile() {
    # musl-gcc has no kernel headers: borrow linux-libc-dev's through a private include folder.
    rm -rf /work/kinc && mkdir /work/kinc
    for dir in linux asm-generic mtd scsi; do ln -s "/usr/include/$dir" "/work/kinc/$dir"; done
    ln -s "/usr/include/$(gcc -dumpmachine)/asm" /work/kinc/asm
    make -j"$(nproc)" busybox CC=musl-gcc KCONFIG_NOTIMESTAMP=1 \
        BB_EXTRA_VERSION="bootkiln Debian $1" \
        CONFIG_EXTRA_CFLAGS="-ffile-prefix-map=/work=/build -isystem /work/kinc"
}

# arm64: Debian's <triplet>-gcc and static glibc (there is no musl cross toolchain in Debian): on an
# amd64 builder gcc-aarch64-linux-gnu with libc6-dev-arm64-cross (which brings the kernel headers),
# on an arm64 builder the native gcc under the same name.
cross_compile() {
    command -v "${TRIPLET}-gcc" > /dev/null || {
        echo "busybox.sh: the builder has no ${TRIPLET}-gcc to compile busybox for $BK_ARCH" >&2; exit 3; }
    make -j"$(nproc)" busybox CROSS_COMPILE="${TRIPLET}-" KCONFIG_NOTIMESTAMP=1 \
        BB_EXTRA_VERSION="bootkiln Debian $1" \
        CONFIG_EXTRA_CFLAGS="-ffile-prefix-map=/work=/build"
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
    # The toolchain follows the target only, never the builder, so every builder makes the same bytes:
    # amd64 is musl (musl-gcc, which exists on amd64 builders only), arm64 Debian's aarch64-linux-gnu
    # gcc with static glibc (a cross compiler on amd64, the native one on arm64).
    if [ "$BK_ARCH" = amd64 ]; then
        [ "$BK_BUILDER_ARCH" = amd64 ] || {
            echo "busybox.sh: building an amd64 busybox on a $BK_BUILDER_ARCH builder is not supported yet" >&2; exit 3; }
        native_compile "$version"
    else
        cross_compile "$version"
    fi

    local dynamic
    dynamic=$(readelf -d busybox 2>&1 || true)
    case "$dynamic" in *"no dynamic section"*) ;; *) echo "busybox.sh: busybox is not static" >&2; exit 1 ;; esac
    if readelf -lW busybox | grep -q INTERP; then echo "busybox.sh: busybox has an interpreter" >&2; exit 1; fi
    rm -rf "$OUT" && mkdir -p "$OUT"
    install -m 0755 busybox "$OUT/busybox"
    if [ "$BK_ARCH" = "$BK_BUILDER_ARCH" ]; then
        # Without bzip2 the build "succeeds" with empty --help texts.
        local usage
        usage=$(./busybox ls --help 2>&1 || true)
        case "$usage" in *"Usage: ls"*) ;; *) echo "busybox.sh: usage texts missing" >&2; exit 1 ;; esac
        ./busybox --list-full | LC_ALL=C sort > "$OUT/applets.txt"
    else
        # A foreign busybox cannot run here: the same list, made from the configuration by busybox's own
        # script (what --list-full prints, without the leading slash).
        grep -q '^CONFIG_FEATURE_COMPRESS_USAGE=y' .config && [ -s include/usage_compressed.h ] \
            || { echo "busybox.sh: usage texts missing" >&2; exit 1; }
        make -s busybox.links
        sed 's|^/||' busybox.links | LC_ALL=C sort > "$OUT/applets.txt"
    fi
    echo "$version" > "$OUT/version.txt"
    cp /work/source.sha256 "$OUT/source.sha256"
    if [ "$BK_ARCH" = amd64 ]; then
        dpkg-query -W -f '${Package}\t${Version}\n' gcc-12 binutils musl-dev linux-libc-dev make > "$OUT/toolchain.tsv"
    elif [ "$BK_ARCH" = "$BK_BUILDER_ARCH" ]; then
        dpkg-query -W -f '${Package}\t${Version}\n' gcc-12 binutils libc6-dev linux-libc-dev make > "$OUT/toolchain.tsv"
    else
        dpkg-query -W -f '${Package}\t${Version}\n' "gcc-12-$TRIPLET" "binutils-$TRIPLET" "libc6-dev-$BK_ARCH-cross" \
            "linux-libc-dev-$BK_ARCH-cross" make > "$OUT/toolchain.tsv"
    fi
    echo "busybox: $version, $(stat -c %s busybox) bytes, $(wc -l < "$OUT/applets.txt") applets"
}

case "${1:-}" in
    fetch) fetch ;;
    compile) compile ;;
    *) echo "usage: $0 fetch|compile" >&2; exit 2 ;;
esac
