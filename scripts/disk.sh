#!/bin/bash
# disk stage, run inside the builder container (network none): a raw GPT disk image that boots
# under BIOS and UEFI, made WITHOUT loop devices or mounts, deterministic for the same inputs.
# Inputs: /bootkiln/in/{rootfs.tar,vmlinuz,initrd.img}; BK_SIZE (bytes), BK_ESP_MIB, BK_SEED,
# BK_CMDLINE, BK_LAYOUT, BK_SECURE_BOOT (0: an unsigned GRUB), BK_UKI (a signed Unified Kernel Image
# to boot UEFI instead), SOURCE_DATE_EPOCH.
# Outputs: /work/out/disk.img (sparse) and disk-ids.txt.
# BK_LAYOUT=installer: p3 is the installer's boot partition instead (no rootfs): the kernel, the
# initramfs and GRUB's menu at its top level, and /bootkiln/in/payload/* under bootkiln-payload/.
# The installer keeps it as the installed system's /boot.
#
# Layout (512-byte sectors, 1 MiB aligned):
#   LBA 0         protective MBR; its first 440 bytes are GRUB's boot.img, patched
#   p1 2048+2048  BIOS boot partition: GRUB i386-pc core.img, patched
#   p2 4096+ESP   EFI system partition (FAT32): Debian's Secure Boot chain, EFI/BOOT/BOOTX64.EFI
#                 (signed shim) -> EFI/BOOT/grubx64.efi (signed GRUB) -> EFI/debian/grub.cfg
#   p3 ...->end   Linux root (ext4): the rootfs plus /boot/{vmlinuz,initrd.img,grub/grub.cfg}
set -euo pipefail
: "${SOURCE_DATE_EPOCH:?}" "${BK_SIZE:?}" "${BK_ESP_MIB:?}" "${BK_SEED:?}" "${BK_CMDLINE:?}"
LAYOUT=${BK_LAYOUT:-root}
if [ "$LAYOUT" = installer ]; then
    BOOT=""            # p3 is mounted at /boot: its files sit at the top
    P3_TYPE=0FC63DAF-8483-4772-8E79-3D69D8477DE4 P3_NAME=bootkiln-installer FS_LABEL=bootkiln-boot
else
    BOOT=/boot
    P3_TYPE=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709 P3_NAME=root FS_LABEL=root
fi
SDE=$SOURCE_DATE_EPOCH
export LC_ALL=C TZ=UTC               # FAT times are local time; directory order follows strcoll()
export E2FSPROGS_FAKE_TIME=$SDE      # libext2fs's clock: superblock times, crtime of new inodes
export MTOOLS_SKIP_CHECK=1 MTOOLSRC=/dev/null
umask 022
IN=/bootkiln/in
OUT=/work/out
W=/work/disk
rm -rf "$W" "$OUT" && mkdir -p "$W" "$OUT"
# GRUB's modules and Debian's signed binaries are the target's, from the bootloader stage
# (/bootkiln/in/grub-modules.tar), never the builder's own: an arm64 builder has no x86 GRUB.
# arm64 (BK_ARCH): UEFI only. No BIOS boot partition and no BIOS boot code (the ESP is p1, the root
# p2); GRUB arm64-efi as BOOTAA64.EFI.
ARCH=${BK_ARCH:-amd64}
case "$ARCH" in
    amd64) EFI_FORMAT=x86_64-efi EFI_NAME=BOOTX64.EFI EFI_SHORT=x64 EFI_EXTRA="efi_gop efi_uga" BIOS=1
        TRIPLET=x86_64-linux-gnu ;;
    arm64) EFI_FORMAT=arm64-efi EFI_NAME=BOOTAA64.EFI EFI_SHORT=aa64 EFI_EXTRA="efi_gop" BIOS=
        TRIPLET=aarch64-linux-gnu ;;
    *) echo "disk.sh: no boot loader for $ARCH" >&2; exit 3 ;;
esac
mkdir -p "$W/grub" && tar -x -f "$IN/grub-modules.tar" -C "$W/grub"
G_EFI=$W/grub/$EFI_FORMAT G_PC=$W/grub/i386-pc SIGNED=$W/grub/signed
IMG=$OUT/disk.img

die() { echo "disk.sh: $*" >&2; exit 1; }

# --- identifiers, all derived from the seed -------------------------------------------------------
hex_of() { printf '%s' "$BK_SEED:$1" | sha256sum | cut -c1-64; }
uuid_of() {  # shaped as RFC 4122 version 4 (variant 10xx)
    local x
    x=$(hex_of "$1")
    printf '%s-%s-4%s-%x%s-%s\n' "${x:0:8}" "${x:8:4}" "${x:13:3}" $(( (0x${x:16:1} & 3) | 8 )) "${x:17:3}" "${x:20:12}"
}
DISK_GUID=$(uuid_of gpt-disk)
P1_UUID=$(uuid_of gpt-part-bios)
P2_UUID=$(uuid_of gpt-part-esp)
P3_UUID=$(uuid_of gpt-part-root)
FS_UUID=$(uuid_of ext4-uuid)
FS_HASH_SEED=$(uuid_of ext4-hash-seed)
ESP_SERIAL=$(hex_of fat-serial | cut -c1-8)

# --- geometry -------------------------------------------------------------------------------------
truncate -s "$BK_SIZE" "$IMG"
TOTAL=$(( BK_SIZE / 512 ))
P1_START=2048 P1_SIZE=2048
P2_START=$(( P1_START + P1_SIZE )) P2_SIZE=$(( BK_ESP_MIB * 2048 ))
P3_START=$(( P2_START + P2_SIZE ))
LAST_USABLE=$(( TOTAL - 34 ))   # the backup GPT takes the last 33 sectors
P3_SIZE=$(( (LAST_USABLE + 1 - P3_START) / 2048 * 2048 ))
(( P3_SIZE > 0 )) || die "disk.size $BK_SIZE leaves no room for the root partition"

# --- 1. the partition table -----------------------------------------------------------------------
sfdisk --quiet --no-reread --no-tell-kernel --wipe never "$IMG" <<EOF
label: gpt
label-id: $DISK_GUID
unit: sectors
first-lba: 34
last-lba: $LAST_USABLE
sector-size: 512

$([ -n "$BIOS" ] && echo "start=$P1_START, size=$P1_SIZE, type=21686148-6449-6E6F-744E-656564454649, uuid=$P1_UUID, name=\"bios-boot\"")
start=$P2_START, size=$P2_SIZE, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=$P2_UUID, name="esp"
start=$P3_START, size=$P3_SIZE, type=$P3_TYPE, uuid=$P3_UUID, name="$P3_NAME"
EOF

# --- 2. the tree: the rootfs (or the installer's files), plus the kernel, initramfs and GRUB's menu -----
R=$W/root
mkdir "$R"
if [ "$LAYOUT" = installer ]; then
    CMDLINE="$BK_CMDLINE"
    mkdir -p "$R/bootkiln-payload"
    if [ -d "$IN/payload" ]; then
        install -m 0644 -o 0 -g 0 "$IN"/payload/* "$R/bootkiln-payload/"
    fi
    # How the installer tells its own partition from any other disk it may find.
    echo "bootkiln installer boot partition" > "$R/bootkiln-installer"
else
    tar -x --numeric-owner --same-owner --same-permissions -f "$IN/rootfs.tar" -C "$R"
    CMDLINE="root=UUID=$FS_UUID rootfstype=ext4 $BK_CMDLINE"
fi
mkdir -p "$R$BOOT/grub"
install -m 0644 -o 0 -g 0 "$IN/vmlinuz" "$R$BOOT/vmlinuz"
install -m 0644 -o 0 -g 0 "$IN/initrd.img" "$R$BOOT/initrd.img"
cat > "$R$BOOT/grub/grub.cfg" <<EOF
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set default=0
set timeout=0
menuentry 'bootkiln' {
	linux $BOOT/vmlinuz $CMDLINE
	initrd $BOOT/initrd.img
}
EOF
find "$R$BOOT" -exec touch -h -d "@$SDE" {} +

# --- 3. ext4, from the tree, into a partition-sized sparse file ------------------------------------
# A private mke2fs.conf (Debian bookworm's ext4 defaults), so the builder's cannot change the result.
cat > "$W/mke2fs.conf" <<'EOF'
[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384
[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
EOF
export MKE2FS_CONFIG=$W/mke2fs.conf
truncate -s $(( P3_SIZE * 512 )) "$W/root.ext4"
mke2fs -q -F -t ext4 -T default -b 4096 -I 256 -L "$FS_LABEL" -U "$FS_UUID" \
    -E "hash_seed=$FS_HASH_SEED,root_owner=0:0,no_copy_xattrs,nodiscard,assume_storage_prezeroed=1" \
    -d "$R" "$W/root.ext4"

# mke2fs -d copies atime and ctime from the tree, and ctime is the extraction time (no syscall sets
# it): set both to SOURCE_DATE_EPOCH on every inode in use, with debugfs, without mounting.
dumpe2fs "$W/root.ext4" 2>/dev/null | awk -v e="$SDE" '
    /^Inodes per group:/ { ipg = $4 }
    /^First inode:/      { first = $3 }
    /^Group [0-9]+:/     { g = $2; sub(":", "", g); g += 0 }
    /^  Free inodes: /   {
        lo = g * ipg + 1; hi = (g + 1) * ipg
        for (i = lo; i <= hi; i++) used[i] = 1
        n = split(substr($0, index($0, ":") + 2), parts, ", ")
        for (k = 1; k <= n; k++) {
            if (parts[k] == "") continue
            m = split(parts[k], r, "-"); a = r[1] + 0; b = (m == 2) ? r[2] + 0 : a
            for (i = a; i <= b; i++) delete used[i]
        }
        for (i = lo; i <= hi; i++)
            if ((i in used) && (i == 2 || i >= first)) {
                printf "sif <%d> atime_extra 0\nsif <%d> atime @%s\n", i, i, e
                printf "sif <%d> ctime_extra 0\nsif <%d> ctime @%s\n", i, i, e
                delete used[i]
            }
    }' > "$W/pin-times.debugfs"
# mke2fs records the builder's C `char` as the directory-hash flag: signed on x86, unsigned on Arm, so
# an arm64 builder's superblock differed from an amd64 one's. No directory is indexed yet (mke2fs -d
# writes linear ones; e2fsck below would object otherwise), so pin it as an x86 builder writes it, in
# the backup superblocks too (close -a).
printf '%s\n' "set_super_value flags 1" "close_filesys -a" >> "$W/pin-times.debugfs"
debugfs -w -f "$W/pin-times.debugfs" "$W/root.ext4" > /dev/null 2> "$W/debugfs.err"
if grep -v '^debugfs [0-9]' "$W/debugfs.err" | grep -q .; then cat "$W/debugfs.err" >&2; die "debugfs failed"; fi
e2fsck -fn "$W/root.ext4" > "$W/e2fsck.log" 2>&1 || { cat "$W/e2fsck.log" >&2; die "e2fsck found errors"; }

# --- 4. GRUB for both firmwares: find the root fs by UUID, read its /boot/grub/grub.cfg ------------
cat > "$W/embed.cfg" <<EOF
search --no-floppy --fs-uuid --set=root $FS_UUID
set prefix=(\$root)$BOOT/grub
configfile (\$root)$BOOT/grub/grub.cfg
echo "bootkiln: cannot load grub.cfg from the ext4 filesystem $FS_UUID"
EOF
MODULES="part_gpt ext2 search search_fs_uuid normal linux boot serial terminal echo configfile test"
if [ -n "$BIOS" ]; then
    # shellcheck disable=SC2086
    grub-mkimage -O i386-pc -d $G_PC -o "$W/core.img" -c "$W/embed.cfg" -p "$BOOT/grub" $MODULES biosdisk
fi

# --- 5. the ESP: FAT32 without a mount (mkfs.vfat -C, then mcopy of a pre-dated tree) ---------------
# UEFI boots Debian's signed chain, so Secure Boot with Microsoft's keys needs no setting. shim
# loads grubx64.efi from its own folder (and MokManager, mmx64.efi, to enrol a MOK); the signed
# GRUB's prefix is /EFI/debian on the ESP, where it sources grub.cfg: the same search as core.img's.
# Signed binaries are copied byte for byte from the archive, so the image stays reproducible.
mkdir -p "$W/esp/EFI/BOOT"
if [ -n "${BK_UKI:-}" ]; then
    # The profile's own key: its signed UKI carries the kernel, the initramfs and this command line,
    # which the host computed the same way (stages/artifacts.py): check, as a UKI cannot be changed.
    # The target's objcopy: a builder's own reads only its own architecture's PE files.
    "$TRIPLET-objcopy" -O binary --only-section=.cmdline "$BK_UKI" "$W/uki-cmdline.txt"
    [ "$(cat "$W/uki-cmdline.txt")" = "$CMDLINE" ] || die "the UKI's command line is not '$CMDLINE'"
    install -m 0644 "$BK_UKI" "$W/esp/EFI/BOOT/$EFI_NAME"
elif [ "${BK_SECURE_BOOT:-1}" = 1 ]; then
    mkdir -p "$W/esp/EFI/debian"
    install -m 0644 "$SIGNED/shim$EFI_SHORT.efi.signed" "$W/esp/EFI/BOOT/$EFI_NAME"
    install -m 0644 "$SIGNED/mm$EFI_SHORT.efi.signed" "$W/esp/EFI/BOOT/mm$EFI_SHORT.efi"
    install -m 0644 "$SIGNED/grub$EFI_SHORT.efi.signed" "$W/esp/EFI/BOOT/grub$EFI_SHORT.efi"
    install -m 0644 "$W/embed.cfg" "$W/esp/EFI/debian/grub.cfg"
else  # secureboot = false: an unsigned GRUB with the search built in
    # shellcheck disable=SC2086
    grub-mkimage -O $EFI_FORMAT -d "$G_EFI" -o "$W/esp/EFI/BOOT/$EFI_NAME" -c "$W/embed.cfg" -p "$BOOT/grub" \
        $MODULES fat $EFI_EXTRA
fi
find "$W/esp" -exec touch -h -d "@$SDE" {} +
# FAT32 needs 65525 clusters: a small ESP (an installer's 128 MiB image) is FAT16, which UEFI
# firmware reads as well.
FAT=32
(( BK_ESP_MIB >= 64 )) || FAT=16
mkfs.vfat --invariant -i "$ESP_SERIAL" -n ESP -F $FAT -C "$W/esp.img" $(( P2_SIZE / 2 )) > /dev/null
mcopy -s -m -i "$W/esp.img" "$W/esp/EFI" ::/
fsck.vfat -n "$W/esp.img" > "$W/fsck.log" 2>&1 || { cat "$W/fsck.log" >&2; die "fsck.vfat found errors"; }

# --- 6. assemble, keeping the image sparse (it is all holes: conv=sparse skips zero blocks) ---------
dd if="$W/esp.img" of="$IMG" bs=65536 seek=$(( P2_START / 128 )) conv=notrunc,sparse status=none
dd if="$W/root.ext4" of="$IMG" bs=65536 seek=$(( P3_START / 128 )) conv=notrunc,sparse status=none

# --- 7. BIOS: what grub-bios-setup does, on a file (GRUB 2.06 boot.h, boot.S, diskboot.S, setup.c) --
#   boot.img 0x5c  u64 LBA of core.img's first sector; 0x64 boot drive 0xff (use %dl);
#            0x66  the floppy drive check becomes two NOPs; the BPB and partition table stay the disk's
#   core.img 0x1f4 diskboot's blocklist: u64 LBA of core.img's second sector (length set by mkimage)
bios_boot_code() {
put_bytes() {  # put_bytes FILE OFFSET HEX...
    local file=$1 offset=$2
    shift 2
    printf "$(printf '\\x%s' "$@")" | dd of="$file" bs=1 seek="$offset" conv=notrunc status=none
}
le64() { local v=$1 i; for i in 0 1 2 3 4 5 6 7; do printf '%02x ' $(( (v >> (8 * i)) & 255 )); done; }
u16_at() { od -An -tu2 -j "$2" -N 2 "$1" | tr -d ' '; }
CORE_SECTORS=$(( ($(stat -c %s "$W/core.img") + 511) / 512 ))
(( CORE_SECTORS <= P1_SIZE )) || die "core.img ($CORE_SECTORS sectors) does not fit the BIOS boot partition"
[ "$(u16_at "$W/core.img" 508)" = $(( CORE_SECTORS - 1 )) ] || die "unexpected diskboot blocklist length"
[ "$(u16_at "$W/core.img" 510)" = $(( 0x820 )) ] || die "unexpected diskboot blocklist segment"
# shellcheck disable=SC2046
put_bytes "$W/core.img" 500 $(le64 $(( P1_START + 1 )))
dd if="$W/core.img" of="$IMG" bs=512 seek=$P1_START conv=notrunc status=none
cp $G_PC/boot.img "$W/boot.img"
# shellcheck disable=SC2046
put_bytes "$W/boot.img" $(( 0x5c )) $(le64 $P1_START)
put_bytes "$W/boot.img" $(( 0x64 )) ff
put_bytes "$W/boot.img" $(( 0x66 )) 90 90
dd if="$W/boot.img" of="$IMG" bs=1 count=3 conv=notrunc status=none
dd if="$W/boot.img" of="$IMG" bs=1 skip=$(( 0x5a )) seek=$(( 0x5a )) count=$(( 0x1b8 - 0x5a )) conv=notrunc status=none
}
if [ -n "$BIOS" ]; then bios_boot_code; fi

# --- 8. checks and the record of identifiers -------------------------------------------------------
sfdisk --verify "$IMG" > "$W/verify.log" 2>&1 || { cat "$W/verify.log" >&2; die "sfdisk --verify failed"; }
[ "$(od -An -tx1 -j 510 -N 2 "$IMG" | tr -d ' ')" = 55aa ] || die "the MBR signature was lost"
[ "$(od -An -tx1 -j 450 -N 1 "$IMG" | tr -d ' ')" = ee ] || die "the protective MBR entry was lost"
cat > "$OUT/disk-ids.txt" <<EOF
disk_guid=$DISK_GUID
$([ -n "$BIOS" ] && echo "bios_boot_partuuid=$P1_UUID")
esp_partuuid=$P2_UUID
esp_serial=$ESP_SERIAL
root_partuuid=$P3_UUID
root_fs_uuid=$FS_UUID
root_hash_seed=$FS_HASH_SEED
cmdline=$CMDLINE
EOF
echo "disk: $(( BK_SIZE >> 20 )) MiB image, $(du -k "$IMG" | cut -f1) KiB allocated, root UUID $FS_UUID"
