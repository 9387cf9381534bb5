#!/bin/sh
# Rebuild lvm-disk.img.xz, the installed-disk fixture that tests/unit/test_diskread.py reads.
#
# Usage (as root, needs sfdisk, e2fsprogs, lvm2, losetup, xz):
#   tests/unit/data/make-lvm-disk.sh [OUTPUT.img.xz]
#
# The disk is 96 MiB, sparse, GPT with 512-byte sectors:
#   1 "bios"  1 MiB  BIOS boot partition (empty)
#   2 "boot" 16 MiB  ext4, label "boot", holding /grub/grub.cfg
#   3 "lvm"  rest    LVM2 PV of VG vgtest:
#        root  24 MiB, then `lvextend -L +8M` after data exists, so it has TWO segments
#              (extents 0-5 and 8-9 of the PV); ext4 over all 32 MiB with /etc/hostname
#              "fixture" (0644), /secret/key (0600) and /var/filler, 20 MiB of a
#              block-numbered pattern big enough to spill into root's second segment
#        data   8 MiB, no filesystem: starts with "bootkiln data LV\n"
#
# The host needs no device-mapper: LVM only writes metadata here (activation is off), and the
# filesystem images are copied into the PV at the extents `lvs` reports, so the fixture's layout
# comes from LVM itself, not from the reader under test. LVM sees only our loop device, keeps no
# backup/archive copies in /etc/lvm, and the VG is never activated, so nothing is left on the
# host but the output file.
set -eu

out=$(realpath "${1:-$(dirname "$0")/lvm-disk.img.xz}")
vg=vgtest
work=$(mktemp -d /tmp/make-lvm-disk.XXXXXX)
pv_loop=""

cleanup() {
    if [ -n "$pv_loop" ]; then
        lvm vgchange -an "$vg" >/dev/null 2>&1 || true
        losetup -d "$pv_loop" || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

img=$work/lvm-disk.img
truncate -s 96M "$img"
# Fixed GUIDs so a rebuild differs only in what LVM and mke2fs stamp (UUIDs, times, host name).
sfdisk --quiet "$img" <<'EOF'
label: gpt
label-id: 6B1F3C4E-9A2D-4E8B-8C11-0D2E3F405162
unit: sectors
first-lba: 2048
sector-size: 512
start=2048, size=2048, type=21686148-6E6F-7449-6E65-656446494645, uuid=0A1B2C3D-4E5F-4607-8819-2A3B4C5D6E7F, name="bios"
start=4096, size=32768, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=1B2C3D4E-5F60-4718-892A-3B4C5D6E7F80, name="boot"
start=36864, type=E6D6D379-F507-44C2-A23C-238F2A3DF928, uuid=2C3D4E5F-6071-4829-9A3B-4C5D6E7F8091, name="lvm"
EOF

part_start() { sfdisk --json "$img" | python3 -c "import json,sys; p=json.load(sys.stdin)['partitiontable']['partitions'][$1-1]; print(p['start']*512, p['size']*512)"; }

# Partition 2: a small ext4 /boot, built from a folder (no mount) and copied in.
mkdir -p "$work/boot/grub"
echo "# fixture grub.cfg" >"$work/boot/grub/grub.cfg"
mkfs.ext4 -q -F -L boot -d "$work/boot" "$work/boot.ext4" 16M >/dev/null
set -- $(part_start 2)
dd if="$work/boot.ext4" of="$img" bs=1M seek="$1" oflag=seek_bytes conv=notrunc,sparse status=none

# Partition 3: the PV, through a loop device limited to the partition's byte range.
set -- $(part_start 3)
pv_loop=$(losetup --find --show --offset "$1" --sizelimit "$2" "$img")
pv_offset=$1
mkdir -p "$work/lvm"
cat >"$work/lvm/lvm.conf" <<EOF
devices {
    global_filter = [ "a|^$pv_loop\$|", "r|.*|" ]
    use_devicesfile = 0
    obtain_device_list_from_udev = 0
}
global { activation = 0 }
activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }
backup { backup = 0 archive = 0 }
EOF
export LVM_SYSTEM_DIR="$work/lvm" LVM_SUPPRESS_FD_WARNINGS=1
lvm pvcreate -q "$pv_loop"
lvm vgcreate -q "$vg" "$pv_loop"
lvm lvcreate -q -an -Zn -Wn -L 24M -n root "$vg"
lvm lvcreate -q -an -Zn -Wn -L 8M -n data "$vg"
lvm lvextend -q -L +8M "$vg/root"

# Write a volume's content at the extents LVM allocated: "<le_start> <le_count> <pv>:<pe>-<pe>".
extent=$(lvm vgs --noheadings --units b --nosuffix -o vg_extent_size "$vg" | tr -d ' ')
pe_start=$(lvm pvs --noheadings --units b --nosuffix -o pe_start "$pv_loop" | tr -d ' ')
fill_lv() {
    lvm lvs --noheadings --segments -o seg_start_pe,seg_size_pe,seg_pe_ranges "$vg/$1" |
    while read -r le count range; do
        pe=${range#*:}
        pe=${pe%-*}
        dd if="$2" of="$img" bs="$extent" skip="$le" count="$count" \
            seek=$((pv_offset + pe_start + pe * extent)) oflag=seek_bytes conv=notrunc,sparse status=none
    done
}

mkdir -p "$work/root/etc" "$work/root/secret" "$work/root/var"
echo fixture >"$work/root/etc/hostname"
chmod 0644 "$work/root/etc/hostname"
echo "not really a secret" >"$work/root/secret/key"
chmod 0600 "$work/root/secret/key"
# 4 KiB blocks each holding their own number: compresses to almost nothing, yet a misplaced
# extent shows up as wrong content.
python3 -c "
import sys
for i in range(20 * 256):
    sys.stdout.buffer.write(b'%08d' % i * 512)
" >"$work/root/var/filler"
root_size=$(lvm lvs --noheadings --units b --nosuffix -o lv_size "$vg/root" | tr -d ' ')
mkfs.ext4 -q -F -L root -d "$work/root" "$work/root.ext4" "$((root_size / 1024))k" >/dev/null
fill_lv root "$work/root.ext4"

data_size=$(lvm lvs --noheadings --units b --nosuffix -o lv_size "$vg/data" | tr -d ' ')
printf 'bootkiln data LV\n' >"$work/data.bin"
truncate -s "$data_size" "$work/data.bin"
fill_lv data "$work/data.bin"

lvm lvs --segments -o lv_name,seg_start_pe,seg_size_pe,seg_pe_ranges "$vg"
xz -9 -T1 --keep --stdout "$img" >"$out"
ls -l "$out"
