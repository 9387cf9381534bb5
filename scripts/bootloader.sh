#!/bin/bash
# bootloader stage, run inside the builder container: the boot files of the target's ISO.
#   bootloader.sh        (network none)  make them
#   bootloader.sh fetch  (network host)  arm64 only: the target's GRUB modules (grub-efi-arm64-bin is
#                                        an arm64 package) from the profile's archive, unpacked; with
#                                        BK_SECURE_BOOT=1 also Debian's signed arm64 shim, MokManager
#                                        and GRUB (shim-signed, shim-helpers-arm64-signed,
#                                        grub-efi-arm64-signed)
# amd64 (hybrid BIOS/UEFI), from Debian's packages in the builder image:
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
#   BK_SECURE_BOOT=0: BOOTAA64.EFI made by the builder's grub-mkimage from the fetched arm64-efi
#   modules; its config finds the ISO by BK_ISO_MARKER.
set -euo pipefail
: "${SOURCE_DATE_EPOCH:?}" "${BK_ARCH:=amd64}"
export LC_ALL=C TZ=UTC MTOOLS_SKIP_CHECK=1   # mtools stamps entries through localtime()
umask 022
OUT=/work/out
WORK=/work/efi
GRUB_ROOT=/work/grub-target

if [ "${1:-}" = fetch ]; then
    # shellcheck source=lib/archive-apt.sh
    . /bootkiln/lib/archive-apt.sh
    archive_apt_update
    rm -rf /work/grub-deb "$GRUB_ROOT" && apt_download_dir /work/grub-deb
    (cd /work/grub-deb && apt-get "${ARCHIVE_APT[@]}" -q download "grub-efi-$BK_ARCH-bin")
    dpkg-deb -x /work/grub-deb/grub-efi-"$BK_ARCH"-bin_*.deb "$GRUB_ROOT"
    dpkg-deb -f /work/grub-deb/grub-efi-"$BK_ARCH"-bin_*.deb Package Version Architecture
    if [ "${BK_SECURE_BOOT:-1}" = 1 ]; then
        (cd /work/grub-deb && apt-get "${ARCHIVE_APT[@]}" -q download shim-signed \
            "shim-helpers-$BK_ARCH-signed" "grub-efi-$BK_ARCH-signed")
        for deb in /work/grub-deb/shim-*.deb /work/grub-deb/grub-efi-"$BK_ARCH"-signed_*.deb; do
            dpkg-deb -x "$deb" "$GRUB_ROOT"
            dpkg-deb -f "$deb" Package Version Architecture
        done
    fi
    exit 0
fi

rm -rf "$OUT" "$WORK" && mkdir -p "$OUT" "$WORK/tree/EFI/BOOT"

case "$BK_ARCH" in
    amd64)
        cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/ISOLINUX/isohdpfx.bin "$OUT/"
        cp /usr/lib/syslinux/modules/bios/ldlinux.c32 "$OUT/"
        EFI_NAME=BOOTX64.EFI
        if [ -n "${BK_UKI:-}" ]; then
            # The profile's own key: a Unified Kernel Image signed with it, so the firmware's signature
            # check covers the kernel, the initramfs and the command line (scripts/uki.sh, ukisign.sh).
            install -m 0644 "$BK_UKI" "$WORK/tree/EFI/BOOT/BOOTX64.EFI"
            loaders="systemd-boot-efi"
        elif [ "${BK_SECURE_BOOT:-1}" = 1 ]; then
            # Signed binaries are inputs from the archive: copied byte for byte, never rebuilt, so the
            # image stays reproducible. shim loads \EFI\BOOT\grubx64.efi (its DEFAULT_LOADER) next to itself.
            install -m 0644 /usr/lib/shim/shimx64.efi.signed "$WORK/tree/EFI/BOOT/BOOTX64.EFI"
            install -m 0644 /usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed "$WORK/tree/EFI/BOOT/grubx64.efi"
            loaders="shim-signed grub-efi-amd64-signed"
        else
            # secureboot = false: an unsigned GRUB whose embedded config (GRUB's rescue parser: plain
            # commands only) does what the signed one's does. grub-mkimage embeds no timestamp. No
            # partition modules: the ISO9660 filesystem starts at sector 0 of the whole disk, on CD and
            # on USB alike. efi_gop gives Linux a framebuffer for the screen console.
            printf '%s\n' 'search --no-floppy --file --set=root /.disk/info' 'set prefix=($root)/boot/grub' \
                > "$WORK/early.cfg"
            grub-mkimage --directory=/usr/lib/grub/x86_64-efi --format=x86_64-efi --prefix=/boot/grub \
                --config="$WORK/early.cfg" --output="$WORK/tree/EFI/BOOT/BOOTX64.EFI" \
                search_fs_file iso9660 normal linux serial terminal echo efi_gop
            loaders="grub-efi-amd64-bin grub-common"
        fi
        ;;
    arm64)
        : "${BK_ISO_MARKER:?}"
        GRUB_DIR=$GRUB_ROOT/usr/lib/grub/arm64-efi EFI_NAME=BOOTAA64.EFI
        [ -f "$GRUB_DIR/linux.mod" ] || { echo "bootloader.sh: no GRUB modules in $GRUB_DIR" >&2; exit 3; }
        SIGNED=/work/signed
        rm -rf "$SIGNED" && mkdir -p "$SIGNED"
        if [ "${BK_SECURE_BOOT:-1}" = 1 ]; then
            # Byte for byte from the archive, as on amd64; the disk stage gets them with the modules.
            install -m 0644 "$GRUB_ROOT/usr/lib/shim/shimaa64.efi.signed" "$GRUB_ROOT/usr/lib/shim/mmaa64.efi.signed" \
                "$GRUB_ROOT/usr/lib/grub/arm64-efi-signed/grubaa64.efi.signed" "$SIGNED/"
            install -m 0644 "$SIGNED/shimaa64.efi.signed" "$WORK/tree/EFI/BOOT/$EFI_NAME"
            install -m 0644 "$GRUB_ROOT/usr/lib/grub/arm64-efi-signed/gcdaa64.efi.signed" \
                "$WORK/tree/EFI/BOOT/grubaa64.efi"
        else
            # No PC serial port here: the firmware's console is the serial console (AAVMF, EC2).
            printf '%s\n' "search --no-floppy --file --set=root $BK_ISO_MARKER" 'set prefix=($root)/boot/grub' \
                > "$WORK/early.cfg"
            grub-mkimage --directory="$GRUB_DIR" --format=arm64-efi --prefix=/boot/grub \
                --config="$WORK/early.cfg" --output="$WORK/tree/EFI/BOOT/$EFI_NAME" \
                search_fs_file iso9660 normal linux serial terminal echo efi_gop
        fi
        ;;
    *) echo "bootloader.sh: no boot loader for $BK_ARCH" >&2; exit 3 ;;
esac

# mcopy -m copies the source's mtime into every entry it creates: pin the sources first.
find "$WORK/tree" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
efi_bytes=$(du -cb "$WORK"/tree/EFI/BOOT/* | tail -1 | cut -f1)
# Room for the files, one cluster of slack each, the FATs and the root folder; the ISO budget is tight.
kib=$(( ((efi_bytes / 1024) * 33 / 32 + 96 + 31) / 32 * 32 ))
# --invariant pins the time-derived defaults; the volume serial comes after it to stay ours.
mkfs.vfat --invariant -i B00C1A17 -n BOOTKILNEFI -C "$OUT/efiboot.img" "$kib" >/dev/null
mcopy -s -m -Q -i "$OUT/efiboot.img" "$WORK/tree/EFI" ::/

if [ "$BK_ARCH" = amd64 ]; then
    # shellcheck disable=SC2086
    dpkg-query -W -f '${Package}\t${Version}\n' isolinux syslinux-common $loaders mtools dosfstools \
        > "$OUT/bootloader-packages.tsv"
else
    {
        for deb in /work/grub-deb/*.deb; do
            printf '%s\t%s\n' "$(dpkg-deb -f "$deb" Package)" "$(dpkg-deb -f "$deb" Version)"
        done
        dpkg-query -W -f '${Package}\t${Version}\n' grub-common mtools dosfstools
    } > "$OUT/bootloader-packages.tsv"
    # The disk stage makes its own GRUB image from the same modules, or (Secure Boot) installs the
    # signed binaries, which ride along at the top of the same tar as *.efi.signed.
    find "$SIGNED" -type f -exec cp {} "$GRUB_DIR"/ \;
    tar --create --file "$OUT/grub-modules.tar" --directory "$GRUB_DIR" --sort=name --numeric-owner \
        --owner=0 --group=0 --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime --format=gnu .
fi
echo "bootloader: $EFI_NAME and its loaders, ${efi_bytes} bytes; efiboot.img ${kib} KiB"
