#!/bin/bash
# bootloader stage, run inside the builder container (network none): the BIOS and UEFI boot files
# of a hybrid ISO, taken from Debian's packages in the builder image.
#   BIOS: isolinux.bin, ldlinux.c32 (El Torito) and isohdpfx.bin (the isohybrid MBR).
#   UEFI: efiboot.img, a FAT image made without loop devices (mkfs.vfat + mtools) holding a GRUB
#         EFI binary whose embedded config finds the ISO by its marker file and reads
#         /boot/grub/grub.cfg from it, so the kernel and initramfs are stored once, in ISO9660.
set -euo pipefail
: "${SOURCE_DATE_EPOCH:?}" "${BK_ISO_MARKER:?}"
export LC_ALL=C TZ=UTC MTOOLS_SKIP_CHECK=1   # mtools stamps entries through localtime()
umask 022
OUT=/work/out
WORK=/work/efi
rm -rf "$OUT" "$WORK" && mkdir -p "$OUT" "$WORK/tree/EFI/BOOT"

cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/ISOLINUX/isohdpfx.bin "$OUT/"
cp /usr/lib/syslinux/modules/bios/ldlinux.c32 "$OUT/"

# Runs in GRUB's rescue parser: plain commands only.
cat > "$WORK/early.cfg" <<CFG
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
search --no-floppy --file --set=root $BK_ISO_MARKER
set prefix=(\$root)/boot/grub
CFG
# grub-mkimage embeds no timestamp (unlike grub-mkstandalone's tar memdisk). No partition modules:
# the ISO9660 filesystem starts at sector 0 of the whole disk, on CD and on USB alike. efi_gop gives
# Linux a framebuffer for the screen console.
grub-mkimage --directory=/usr/lib/grub/x86_64-efi --format=x86_64-efi --prefix=/boot/grub \
    --config="$WORK/early.cfg" --output="$WORK/tree/EFI/BOOT/BOOTX64.EFI" \
    search_fs_file iso9660 normal linux serial terminal echo efi_gop

# mcopy -m copies the source's mtime into every entry it creates: pin the sources first.
find "$WORK/tree" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
efi_bytes=$(stat -c %s "$WORK/tree/EFI/BOOT/BOOTX64.EFI")
kib=$(( ((efi_bytes * 5 / 4 / 1024 + 64) + 31) / 32 * 32 ))
# --invariant pins the time-derived defaults; the volume serial comes after it to stay ours.
mkfs.vfat --invariant -i B00C1A17 -n BOOTKILNEFI -C "$OUT/efiboot.img" "$kib" >/dev/null
mcopy -s -m -Q -i "$OUT/efiboot.img" "$WORK/tree/EFI" ::/

dpkg-query -W -f '${Package}\t${Version}\n' isolinux syslinux-common grub-efi-amd64-bin grub-common \
    mtools dosfstools > "$OUT/bootloader-packages.tsv"
echo "bootloader: BOOTX64.EFI ${efi_bytes} bytes, efiboot.img ${kib} KiB"
