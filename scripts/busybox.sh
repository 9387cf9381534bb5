#!/bin/bash
# busybox stage, run inside the builder container with the build volume at /work.
#   busybox.sh fetch     (network host)  apt-get source busybox, and the target's libc, kernel headers and
#                                        libgcc (the sysroot), from the profile's archive
#   busybox.sh compile   (network none)  a static busybox from /bootkiln/busybox.config against that sysroot:
#                                        musl for amd64, glibc for arm64, whatever the builder's architecture
# apt-get source and download check every file against the indexes signed in InRelease; dpkg-source
# then re-checks the .dsc's strong checksums while unpacking and applies Debian's patches.
set -euo pipefail
export LC_ALL=C TZ=UTC
umask 022
unset CFLAGS CPPFLAGS LDFLAGS CC CROSS_COMPILE ARCH MAKEFLAGS
: "${SOURCE_DATE_EPOCH:?}" "${BK_ARCH:?}" "${BK_BUILDER_ARCH:?}"
# SYSROOT_PACKAGES: the target's libc, kernel headers and libgcc (crt*.o, libgcc.a, <stddef.h>...).
case "$BK_ARCH" in
    amd64) TRIPLET=x86_64-linux-gnu SYSROOT_PACKAGES=(musl-dev linux-libc-dev libgcc-12-dev) ;;
    arm64) TRIPLET=aarch64-linux-gnu SYSROOT_PACKAGES=(libc6-dev linux-libc-dev libgcc-12-dev) ;;
    *) echo "busybox.sh: no toolchain for $BK_ARCH" >&2; exit 3 ;; esac
SRC=/work/src
OUT=/work/out

fetch() {
    # shellcheck source=lib/archive-apt.sh
    . /bootkiln/lib/archive-apt.sh
    archive_apt_update with-sources
    fetch_sysroot
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

# The target's side of the toolchain -- libc, kernel headers, libgcc and the compiler's own headers --
# is the TARGET's packages from the profile's archive, unpacked here, never what the builder has
# installed: Debian's cross packages (libc6-dev-arm64-cross...) are rebuilt separately and lag the
# native ones, which made amd64 and arm64 builders link different libc.a. Only the compiler and
# binutils come from the builder ("<triplet>-gcc": native or cross, the same GCC and binutils sources).
SYSROOT=/work/sysroot
GCCLIB="$SYSROOT/usr/lib/gcc/$TRIPLET/12"

fetch_sysroot() {
    rm -rf /work/sysroot-debs "$SYSROOT"
    apt_download_dir /work/sysroot-debs
    (cd /work/sysroot-debs && apt-get "${ARCHIVE_APT[@]}" -q download "${SYSROOT_PACKAGES[@]}")
    mkdir -p "$SYSROOT"
    local deb
    for deb in /work/sysroot-debs/*.deb; do
        dpkg-deb -x "$deb" "$SYSROOT"
        dpkg-deb -f "$deb" Package Architecture Version | awk '{v[NR]=$2} END {print v[1] ":" v[2] "\t" v[3]}'
    done | LC_ALL=C sort > /work/sysroot.tsv
    [ -d "$GCCLIB/include" ] || { echo "busybox.sh: $GCCLIB/include missing from the target's libgcc" >&2; exit 1; }
}

# -nostdinc and -B put the sysroot's headers, start files and libraries before the compiler's own
# (a cross gcc also searches /usr/<triplet>/lib, where libc6-dev-*-cross lives). -fno-ident: the code
# Debian's native and cross gcc-12 generate is the same, but each object's .comment names the
# package's version ("12.2.0-14+deb12u1" natively, "12.2.0-14" in the cross build); strip drops
# .comment, yet ld hashes it into the GNU build-id first. BB_EXTRA_VERSION replaces the build time in
# the banner (Debian's version.patch).
toolchain_make() {
    local version=$1 cc="${TRIPLET}-gcc"
    shift
    command -v "$cc" > /dev/null || {
        echo "busybox.sh: the builder has no $cc to compile busybox for $BK_ARCH" >&2; exit 3; }
    # The sysroot's libgcc and compiler headers are gcc 12's: another compiler would not match them.
    [ "$("$cc" -dumpversion)" = 12 ] || {
        echo "busybox.sh: $cc is gcc $("$cc" -dumpversion), the sysroot has libgcc-12-dev" >&2; exit 3; }
    make -j"$(nproc)" busybox CC="$cc -B$GCCLIB/ $*" CROSS_COMPILE="${TRIPLET}-" KCONFIG_NOTIMESTAMP=1 \
        BB_EXTRA_VERSION="bootkiln Debian $version" \
        CONFIG_EXTRA_CFLAGS="-ffile-prefix-map=/work=/build -fno-ident"
}

# amd64: musl (static glibc warns about NSS and is larger). musl-gcc is a wrapper around a specs file
# in musl-dev; the same file with its paths moved into the sysroot serves x86_64-linux-gnu-gcc, native
# on an amd64 builder and cross on an arm64 one. musl has no kernel headers: linux-libc-dev's go in
# through a private include folder.
musl_compile() {
    rm -rf /work/kinc && mkdir /work/kinc
    for dir in linux asm-generic mtd scsi; do ln -s "$SYSROOT/usr/include/$dir" "/work/kinc/$dir"; done
    ln -s "$SYSROOT/usr/include/$TRIPLET/asm" /work/kinc/asm
    sed "s|/usr/|$SYSROOT/usr/|g" "$SYSROOT/usr/lib/x86_64-linux-musl/musl-gcc.specs" > /work/musl-gcc.specs
    toolchain_make "$1" -specs /work/musl-gcc.specs -isystem /work/kinc
}

# arm64: static glibc (Debian has no musl cross toolchain).
glibc_compile() {
    toolchain_make "$1" --sysroot="$SYSROOT" -B"$SYSROOT/usr/lib/$TRIPLET/" -nostdinc -isystem "$GCCLIB/include" \
        -isystem "$SYSROOT/usr/include/$TRIPLET" -isystem "$SYSROOT/usr/include"
}

# Every header the compiler read (kbuild's .o.cmd dependency lists) and every file the linker loaded
# (trylink's map) must be the build's own or the sysroot's: anything from elsewhere in the builder
# would make the bytes depend on the builder. Host tools (fixdep, the usage generator) are exempt.
check_inputs() {
    local objects foreign
    objects=$(find . -name '.*.o.cmd' -exec grep -l -e "-B$GCCLIB/" {} + | LC_ALL=C sort || true)
    [ -n "$objects" ] || { echo "busybox.sh: no dependency lists of the target's objects" >&2; exit 1; }
    foreign=$( (xargs sed -n 's/^ *\(\/[^ ]*\).*/\1/p' <<< "$objects"; sed -n 's/^LOAD //p' busybox_unstripped.map) \
        | grep -v -e '^/work/' -e '^[^/]' | LC_ALL=C sort -u || true)
    if [ -n "$foreign" ]; then
        echo "busybox.sh: busybox was compiled or linked with files from outside the target sysroot:" $foreign >&2
        exit 1
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
    # The toolchain follows the target only, never the builder, so every builder makes the same bytes.
    if [ "$BK_ARCH" = amd64 ]; then musl_compile "$version"; else glibc_compile "$version"; fi
    check_inputs

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
    # The builder's packages that ran (compiler driver, cc1, assembler, linker, make), then the sysroot's.
    local cc="${TRIPLET}-gcc" file
    for file in "$(command -v "$cc")" "$("$cc" -print-prog-name=cc1)" "$(command -v "${TRIPLET}-as")" \
        "$(command -v "${TRIPLET}-ld")" "$(command -v make)"; do
        dpkg -S "$(readlink -f "$file")" | cut -d: -f1
    done | LC_ALL=C sort -u | xargs dpkg-query -W -f '${Package}\t${Version}\n' > "$OUT/toolchain.tsv"
    cat /work/sysroot.tsv >> "$OUT/toolchain.tsv"
    echo "busybox: $version, $(stat -c %s busybox) bytes, $(wc -l < "$OUT/applets.txt") applets"
}

case "${1:-}" in
    fetch) fetch ;;
    compile) compile ;;
    *) echo "usage: $0 fetch|compile" >&2; exit 2 ;;
esac
