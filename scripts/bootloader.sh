#!/bin/bash
# bootloader stage, run inside the builder container: the boot files of the target's ISO, and the
# GRUB modules and signed binaries the disk stage boots from.
#   bootloader.sh fetch  (network host)  the TARGET's boot packages from the profile's archive,
#                                        unpacked into /work/boot-target: grub-efi-ARCH-bin; on amd64
#                                        also isolinux, syslinux-common and grub-pc-bin; with
#                                        BK_SECURE_BOOT=1 Debian's signed shim, MokManager and GRUB
#                                        (shim-signed, shim-helpers-ARCH-signed, grub-efi-ARCH-signed)
#   bootloader.sh        (network none)  make them
# Boot files come from the target's packages, never from the builder's own: an arm64 builder (an
# Apple Silicon laptop, a Graviton runner) has no x86 boot loaders, and a builder's packages could
# differ from the archive state the profile pins. The builder gives only tools (grub-mkimage,
# mkfs.vfat, mtools), whose output does not depend on the builder's architecture.
# amd64 (hybrid BIOS/UEFI):
#   BIOS: isolinux.bin, ldlinux.c32 (El Torito) and isohdpfx.bin (the isohybrid MBR).
#   UEFI: efiboot.img, a FAT image made without loop devices (mkfs.vfat + mtools) holding Debian's
#         Secure Boot chain: shim (signed by Microsoft) as EFI/BOOT/BOOTX64.EFI, which loads
#         grubx64.efi from its own folder: Debian's signed CD GRUB (gcdx64.efi.signed). That GRUB's
#         embedded config (debian/build-efi-images in grub2's source) finds the medium by
#         /.disk/info, sets prefix=($root)/boot/grub and sources grub.cfg there, so the kernel and
#         initramfs are stored once, in ISO9660; its `linux` verifies the kernel through shim.
#         BK_SECURE_BOOT=0: an unsigned GRUB instead; BK_UKI=<file>: that signed Unified Kernel Image
#         as BOOTX64.EFI instead.
# arm64 (UEFI only): BK_SECURE_BOOT=1: Debian's signed chain as on amd64, shimaa64 as
#   EFI/BOOT/BOOTAA64.EFI and gcdaa64 as EFI/BOOT/grubaa64.efi (it finds the ISO by /.disk/info).
#   BK_SECURE_BOOT=0: BOOTAA64.EFI made by grub-mkimage from the fetched arm64-efi modules; its
#   config finds the ISO by BK_ISO_MARKER.
# grub-modules.tar (for the disk stage): <platform>/ as in /usr/lib/grub (x86_64-efi and i386-pc, or
# arm64-efi) and signed/ with the signed shim, MokManager and GRUB.
# bootloader-packages.tsv: the target packages whose files are used (name, version, architecture,
# .deb sha256), then the builder's tools (name, version).
set -euo pipefail
: "${SOURCE_DATE_EPOCH:?}" "${BK_ARCH:=amd64}" "${BK_ISO_MARKER:?}"
export LC_ALL=C TZ=UTC MTOOLS_SKIP_CHECK=1   # mtools stamps entries through localtime()
umask 022
OUT=/work/out
WORK=/work/efi
DEBS=/work/boot-deb
TARGET=/work/boot-target

case "$BK_ARCH" in
    amd64) EFI_PLATFORM=x86_64-efi EFI_NAME=BOOTX64.EFI EFI_SHORT=x64 BIOS_PACKAGES="isolinux syslinux-common grub-pc-bin"
        ISO_SEARCH=/.disk/info ;;
    # No PC serial port here: the firmware's console is the serial console (AAVMF, EC2).
    arm64) EFI_PLATFORM=arm64-efi EFI_NAME=BOOTAA64.EFI EFI_SHORT=aa64 BIOS_PACKAGES= ISO_SEARCH=$BK_ISO_MARKER ;;
    *) echo "bootloader.sh: no boot loader for $BK_ARCH" >&2; exit 3 ;;
esac
SIGNED_PACKAGES="shim-signed shim-helpers-$BK_ARCH-signed grub-efi-$BK_ARCH-signed"

if [ "${1:-}" = fetch ]; then
    # shellcheck source=lib/archive-apt.sh
    . /bootkiln/lib/archive-apt.sh
    archive_apt_update
    rm -rf "$DEBS" "$TARGET" && apt_download_dir "$DEBS"
    packages="grub-efi-$BK_ARCH-bin $BIOS_PACKAGES"
    [ "${BK_SECURE_BOOT:-1}" = 1 ] && packages="$packages $SIGNED_PACKAGES"
    # shellcheck disable=SC2086
    (cd "$DEBS" && apt-get "${ARCHIVE_APT[@]}" -q download $packages)
    for deb in "$DEBS"/*.deb; do
        arch=$(dpkg-deb -f "$deb" Architecture)
        case "$arch" in "$BK_ARCH"|all) ;; *) echo "bootloader.sh: $deb is for $arch, not $BK_ARCH" >&2; exit 3 ;; esac
        dpkg-deb -x "$deb" "$TARGET"
        dpkg-deb -f "$deb" Package Version Architecture
    done
    exit 0
fi

# The target packages whose files were used, as name, version, architecture and the .deb's sha256.
target_packages() {
    local name deb
    for name in "$@"; do
        deb=$(find "$DEBS" -name "${name}_*.deb" | head -1)
        [ -n "$deb" ] || { echo "bootloader.sh: $name was not fetched" >&2; exit 3; }
        printf '%s\t%s\t%s\t%s\n' "$name" "$(dpkg-deb -f "$deb" Version)" "$(dpkg-deb -f "$deb" Architecture)" \
            "$(sha256sum "$deb" | cut -d' ' -f1)"
    done
}

GRUB_EFI=$TARGET/usr/lib/grub/$EFI_PLATFORM
[ -f "$GRUB_EFI/linux.mod" ] || { echo "bootloader.sh: no GRUB modules in $GRUB_EFI" >&2; exit 3; }
rm -rf "$OUT" "$WORK" && mkdir -p "$OUT" "$WORK/tree/EFI/BOOT" "$WORK/grub/signed"
if [ "${BK_SECURE_BOOT:-1}" = 1 ]; then
    # Byte for byte from the archive, never rebuilt, so the image stays reproducible; the disk stage
    # gets them in grub-modules.tar.
    install -m 0644 "$TARGET/usr/lib/shim/shim$EFI_SHORT.efi.signed" "$TARGET/usr/lib/shim/mm$EFI_SHORT.efi.signed" \
        "$TARGET/usr/lib/grub/$EFI_PLATFORM-signed/grub$EFI_SHORT.efi.signed" "$WORK/grub/signed/"
fi

if [ -n "$BIOS_PACKAGES" ]; then
    cp "$TARGET/usr/lib/ISOLINUX/isolinux.bin" "$TARGET/usr/lib/ISOLINUX/isohdpfx.bin" \
        "$TARGET/usr/lib/syslinux/modules/bios/ldlinux.c32" "$OUT/"
fi
if [ -n "${BK_UKI:-}" ]; then
    # The profile's own key: a Unified Kernel Image signed with it, so the firmware's signature
    # check covers the kernel, the initramfs and the command line (scripts/uki.sh, ukisign.sh).
    install -m 0644 "$BK_UKI" "$WORK/tree/EFI/BOOT/$EFI_NAME"
elif [ "${BK_SECURE_BOOT:-1}" = 1 ]; then
    # shim loads \EFI\BOOT\grub<arch>.efi (its DEFAULT_LOADER) next to itself: the signed CD GRUB.
    install -m 0644 "$WORK/grub/signed/shim$EFI_SHORT.efi.signed" "$WORK/tree/EFI/BOOT/$EFI_NAME"
    install -m 0644 "$TARGET/usr/lib/grub/$EFI_PLATFORM-signed/gcd$EFI_SHORT.efi.signed" \
        "$WORK/tree/EFI/BOOT/grub$EFI_SHORT.efi"
else
    # secureboot = false: an unsigned GRUB whose embedded config (GRUB's rescue parser: plain
    # commands only) does what the signed one's does. grub-mkimage embeds no timestamp. No
    # partition modules: the ISO9660 filesystem starts at sector 0 of the whole disk, on CD and
    # on USB alike. efi_gop gives Linux a framebuffer for the screen console.
    printf '%s\n' "search --no-floppy --file --set=root $ISO_SEARCH" 'set prefix=($root)/boot/grub' \
        > "$WORK/early.cfg"
    grub-mkimage --directory="$GRUB_EFI" --format=$EFI_PLATFORM --prefix=/boot/grub \
        --config="$WORK/early.cfg" --output="$WORK/tree/EFI/BOOT/$EFI_NAME" \
        search_fs_file iso9660 normal linux serial terminal echo efi_gop
fi

# mcopy -m copies the source's mtime into every entry it creates: pin the sources first.
find "$WORK/tree" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
efi_bytes=$(du -cb "$WORK"/tree/EFI/BOOT/* | tail -1 | cut -f1)
# Room for the files, one cluster of slack each, the FATs and the root folder; the ISO budget is tight.
kib=$(( ((efi_bytes / 1024) * 33 / 32 + 96 + 31) / 32 * 32 ))
# --invariant pins the time-derived defaults; the volume serial comes after it to stay ours.
mkfs.vfat --invariant -i B00C1A17 -n BOOTKILNEFI -C "$OUT/efiboot.img" "$kib" >/dev/null
mcopy -s -m -Q -i "$OUT/efiboot.img" "$WORK/tree/EFI" ::/

# The disk stage makes its own GRUB images from the same modules, or installs the signed binaries.
cp -a "$GRUB_EFI" "$WORK/grub/$EFI_PLATFORM"
[ -z "$BIOS_PACKAGES" ] || cp -a "$TARGET/usr/lib/grub/i386-pc" "$WORK/grub/i386-pc"
tar --create --file "$OUT/grub-modules.tar" --directory "$WORK/grub" --sort=name --numeric-owner \
    --owner=0 --group=0 --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime --format=gnu .

# shellcheck disable=SC2046
{
    target_packages $(for deb in "$DEBS"/*.deb; do dpkg-deb -f "$deb" Package; done | sort)
    dpkg-query -W -f '${Package}\t${Version}\n' grub-common mtools dosfstools
} > "$OUT/bootloader-packages.tsv"
echo "bootloader: $EFI_NAME and its loaders, ${efi_bytes} bytes; efiboot.img ${kib} KiB"
