#!/bin/bash
# kernel stage, run inside the builder container with the build volume at /work.
#   kernel.sh fetch     (network host)  download the kernel package from the profile's archive
#   kernel.sh extract   (network none)  take vmlinuz and only the requested modules + dependencies
# Settings: BK_KERNEL_PACKAGE (package name) or /bootkiln/kernel.deb (a given .deb); the module lists
# /bootkiln/modules.txt and /bootkiln/target-modules.txt, one name a line.
set -euo pipefail
export LC_ALL=C.UTF-8 TZ=UTC
umask 022
: "${SOURCE_DATE_EPOCH:?}"
OUT=/work/out

fetch() {
    # shellcheck source=lib/archive-apt.sh
    . /bootkiln/lib/archive-apt.sh
    apt_download_dir /work/deb
    cd /work/deb
    if [ -f /bootkiln/kernel.deb ]; then
        cp /bootkiln/kernel.deb kernel.deb
    else
        archive_apt_update
        local package="$BK_KERNEL_PACKAGE"
        apt-get "${ARCHIVE_APT[@]}" -q download "$package"
        # linux-image-<arch> is a metapackage: follow its dependency to the real image package.
        local deb
        deb=$(ls ./*.deb)
        if ! dpkg-deb -c "$deb" | grep -q '/boot/vmlinu'; then
            local real
            real=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/[ (].*//; s/^ *//' | grep -m1 '^linux-image-' || true)
            [ -n "$real" ] || { echo "kernel.sh: $package holds no kernel and depends on no linux-image package" >&2; exit 3; }
            rm -f ./*.deb
            apt-get "${ARCHIVE_APT[@]}" -q download "$real"
        fi
        mv ./*.deb kernel.deb
    fi
    echo "kernel: $(dpkg-deb -f kernel.deb Package) $(dpkg-deb -f kernel.deb Version)"
}

# select_modules VERSION LIST DEST RESOLVED: the modules in LIST (comma or space separated) and
# everything they need, copied to DEST/lib/modules/VERSION with a fresh modules.dep.
select_modules() {
    local version=$1 list=$2 dest=$3 resolved=$4
    local tree=/work/kx/lib/modules/$version missing=() module line
    : > "$resolved"
    for module in ${list//,/ }; do
        # modprobe resolves aliases, dependencies and softdeps exactly as the booted kernel will.
        if ! modprobe --dirname=/work/kx --set-version="$version" --show-depends "$module" > /work/deps 2>/dev/null; then
            missing+=("$module")
            continue
        fi
        while read -r line; do
            case "$line" in
                insmod\ *) set -- $line; echo "${2#"$tree"/}" >> "$resolved" ;;
                builtin\ *) echo "builtin ${line#builtin }" >> "$resolved.builtin" ;;
            esac
        done < /work/deps
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "UNKNOWN-MODULES: ${missing[*]}" >&2
        echo "kernel.sh: $(dpkg-deb -f /work/deb/kernel.deb Package) $version has no module named: ${missing[*]}" >&2
        exit 4
    fi
    local sel=$dest/lib/modules/$version
    mkdir -p "$sel"
    sort -u "$resolved" | while read -r path; do
        install -D -m 0644 "$tree/$path" "$sel/$path"
    done
    cp "$tree"/modules.order "$tree"/modules.builtin "$tree"/modules.builtin.modinfo "$sel/"
    depmod --basedir="$dest" "$version"
}

module_tar() {  # module_tar ROOT OUTPUT TOP...
    local root=$1 output=$2
    shift 2
    tar --create --file "$output" --directory "$root" \
        --sort=name --numeric-owner --owner=0 --group=0 --format=pax \
        --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
        --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime "$@"
}

extract() {
    rm -rf /work/kx /work/sel /work/target /work/*resolved* "$OUT" && mkdir -p /work/kx /work/sel "$OUT"
    dpkg-deb -x /work/deb/kernel.deb /work/kx
    local version
    version=$(ls /work/kx/lib/modules)
    [ "$(echo "$version" | wc -w)" = 1 ] || { echo "kernel.sh: expected one kernel in the package, found: $version" >&2; exit 3; }
    cp /work/kx/boot/vmlinuz-"$version" "$OUT/vmlinuz"
    # Packages ship no modules.dep (postinst makes it); make it so modprobe can resolve.
    depmod --basedir=/work/kx "$version"

    local modules target_modules
    modules=$(paste -sd, /bootkiln/modules.txt)
    target_modules=$(paste -sd, /bootkiln/target-modules.txt)
    select_modules "$version" "$modules" /work/sel /work/resolved
    module_tar /work/sel "$OUT/modules.tar" lib
    if [ -n "$target_modules" ]; then
        # The installed system's kernel (installer profiles): its own module set, plus the config
        # and System.map initramfs-tools and depmod look for in /boot.
        select_modules "$version" "$target_modules" /work/target /work/target-resolved
        mkdir -p /work/target/boot
        cp /work/kx/boot/config-"$version" /work/kx/boot/System.map-"$version" /work/target/boot/
        module_tar /work/target "$OUT/target-modules.tar" boot lib
    fi
    {
        echo "version=$version"
        echo "package=$(dpkg-deb -f /work/deb/kernel.deb Package)"
        echo "package_version=$(dpkg-deb -f /work/deb/kernel.deb Version)"
        echo "architecture=$(dpkg-deb -f /work/deb/kernel.deb Architecture)"
        echo "package_sha256=$(sha256sum /work/deb/kernel.deb | cut -d' ' -f1)"
        sort -u /work/resolved | sed 's/^/module=/'
        if [ -f /work/resolved.builtin ]; then sort -u /work/resolved.builtin | sed 's/^builtin /builtin=/'; fi
    } > "$OUT/kernel.txt"
    echo "kernel: $version, vmlinuz $(du -h "$OUT/vmlinuz" | cut -f1), $(sort -u /work/resolved | wc -l) modules"
}

case "${1:-}" in
    fetch) fetch ;;
    extract) extract ;;
    *) echo "usage: $0 fetch|extract" >&2; exit 2 ;;
esac
