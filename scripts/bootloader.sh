#!/bin/bash
# bootloader stage, run inside the builder container: the boot files of the target's ISO.
#   bootloader.sh        (network none)  make them
#   bootloader.sh fetch  (network host)  arm64 only: the target's GRUB modules (grub-efi-arm64-bin is
#                                        an arm64 package) from the profile's archive, unpacked
# amd64 (hybrid BIOS/UEFI), from Debian's packages in the builder image:
#   BIOS: isolinux.bin, ldlinux.c32 (El Torito) and isohdpfx.bin (the isohybrid MBR).
#   UEFI: efiboot.img, a FAT image made without loop devices (mkfs.vfat + mtools) holding a GRUB
#         EFI binary whose embedded config finds the ISO by its marker file and reads
#         /boot/grub/grub.cfg from it, so the kernel and initramfs are stored once, in ISO9660.
# arm64 (UEFI only): efiboot.img with EFI/BOOT/BOOTAA64.EFI, made the same way by the builder's
#   grub-mkimage from the fetched arm64-efi modules.
set -euo pipefail
: "${SOURCE_DATE_EPOCH:?}" "${BK_ISO_MARKER:?}" "${BK_ARCH:=amd64}"
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
    exit 0
fi

rm -rf "$OUT" "$WORK" && mkdir -p "$OUT" "$WORK/tree/EFI/BOOT"
case "$BK_ARCH" in
    amd64)
        cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/ISOLINUX/isohdpfx.bin "$OUT/"
        cp /usr/lib/syslinux/modules/bios/ldlinux.c32 "$OUT/"
        GRUB_DIR=/usr/lib/grub/x86_64-efi FORMAT=x86_64-efi EFI_NAME=BOOTX64.EFI
        # Runs in GRUB's rescue parser: plain commands only.
        cat > "$WORK/early.cfg" <<CFG
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
search --no-floppy --file --set=root $BK_ISO_MARKER
set prefix=(\$root)/boot/grub
CFG
        ;;
    arm64)
        GRUB_DIR=$GRUB_ROOT/usr/lib/grub/arm64-efi FORMAT=arm64-efi EFI_NAME=BOOTAA64.EFI
        # No PC serial port here: the firmware's console is the serial console (AAVMF, EC2).
        cat > "$WORK/early.cfg" <<CFG
search --no-floppy --file --set=root $BK_ISO_MARKER
set prefix=(\$root)/boot/grub
CFG
        ;;
    *) echo "bootloader.sh: no boot loader for $BK_ARCH" >&2; exit 3 ;;
esac
[ -f "$GRUB_DIR/linux.mod" ] || { echo "bootloader.sh: no GRUB modules in $GRUB_DIR" >&2; exit 3; }
# grub-mkimage embeds no timestamp (unlike grub-mkstandalone's tar memdisk). No partition modules:
# the ISO9660 filesystem starts at sector 0 of the whole disk, on CD and on USB alike. efi_gop gives
# Linux a framebuffer for the screen console.
grub-mkimage --directory="$GRUB_DIR" --format="$FORMAT" --prefix=/boot/grub \
    --config="$WORK/early.cfg" --output="$WORK/tree/EFI/BOOT/$EFI_NAME" \
    search_fs_file iso9660 normal linux serial terminal echo efi_gop

# mcopy -m copies the source's mtime into every entry it creates: pin the sources first.
find "$WORK/tree" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
efi_bytes=$(stat -c %s "$WORK/tree/EFI/BOOT/$EFI_NAME")
kib=$(( ((efi_bytes * 5 / 4 / 1024 + 64) + 31) / 32 * 32 ))
# --invariant pins the time-derived defaults; the volume serial comes after it to stay ours.
mkfs.vfat --invariant -i B00C1A17 -n BOOTKILNEFI -C "$OUT/efiboot.img" "$kib" >/dev/null
mcopy -s -m -Q -i "$OUT/efiboot.img" "$WORK/tree/EFI" ::/

if [ "$BK_ARCH" = amd64 ]; then
    dpkg-query -W -f '${Package}\t${Version}\n' isolinux syslinux-common grub-efi-amd64-bin grub-common \
        mtools dosfstools > "$OUT/bootloader-packages.tsv"
else
    {
        deb=$(echo /work/grub-deb/grub-efi-"$BK_ARCH"-bin_*.deb)
        printf '%s\t%s\n' "$(dpkg-deb -f "$deb" Package)" "$(dpkg-deb -f "$deb" Version)"
        dpkg-query -W -f '${Package}\t${Version}\n' grub-common mtools dosfstools
    } > "$OUT/bootloader-packages.tsv"
fi
if [ "$BK_ARCH" != amd64 ]; then
    # The disk stage makes its own GRUB image from the same modules.
    tar --create --file "$OUT/grub-modules.tar" --directory "$GRUB_DIR" --sort=name --numeric-owner \
        --owner=0 --group=0 --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime --format=gnu .
fi
echo "bootloader: $EFI_NAME ${efi_bytes} bytes, efiboot.img ${kib} KiB"
