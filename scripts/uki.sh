#!/bin/bash
# uki stage, run inside the builder container: a Unified Kernel Image, unsigned.
#   uki.sh fetch  (network host)  the target's systemd-boot-efi from the profile's archive, unpacked
#   uki.sh        (network none)  make the images
# The target's systemd-boot-efi stub (linuxx64.efi.stub) with the kernel, the initramfs, the command
# line and an os-release added as PE sections (bookworm has no ukify; systemd-stub(7) names the
# sections), by the target's binutils (x86_64-linux-gnu-objcopy: a builder's own objcopy reads only its
# own architecture's PE files; an arm64 builder has the x86 one from binutils-x86-64-linux-gnu).
# Inputs: /bootkiln/in/{vmlinuz,initrd.img,os-release} and /bootkiln/in/<medium>/cmdline.txt for each
# medium (iso, disk). Outputs: /work/out/uki-<medium>.efi, the same but for the command line.
# Signing is a separate step (the ukisign stage): this output is cached, and never sees a key.
set -euo pipefail
: "${SOURCE_DATE_EPOCH:?}" "${BK_ARCH:?}"
export LC_ALL=C TZ=UTC
umask 022
IN=/bootkiln/in
OUT=/work/out
DEBS=/work/stub-deb
TARGET=/work/stub-target
case "$BK_ARCH" in
    amd64) STUB=$TARGET/usr/lib/systemd/boot/efi/linuxx64.efi.stub TRIPLET=x86_64-linux-gnu ;;
    *) echo "uki.sh: no systemd-stub for $BK_ARCH" >&2; exit 3 ;;
esac

if [ "${1:-}" = fetch ]; then
    # shellcheck source=lib/archive-apt.sh
    . /bootkiln/lib/archive-apt.sh
    archive_apt_update
    rm -rf "$DEBS" "$TARGET" && apt_download_dir "$DEBS"
    (cd "$DEBS" && apt-get "${ARCHIVE_APT[@]}" -q download systemd-boot-efi)
    dpkg-deb -x "$DEBS"/systemd-boot-efi_*.deb "$TARGET"
    dpkg-deb -f "$DEBS"/systemd-boot-efi_*.deb Package Version Architecture
    exit 0
fi
[ -f "$STUB" ] || { echo "uki.sh: no stub at $STUB (run uki.sh fetch first)" >&2; exit 3; }
rm -rf "$OUT" && mkdir -p "$OUT"

# Each section goes after the one before, starting past the stub's last section, aligned to
# 4 KiB pages: the stub maps them at these addresses. The .linux section's address must let the
# kernel be copied out page-aligned, which 4 KiB alignment gives (systemd-stub(7), "UKI").
align() { echo $(( ($1 + 4095) / 4096 * 4096 )); }
le32() { printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(( $1 & 255 )) $(( $1 >> 8 & 255 )) $(( $1 >> 16 & 255 )) $(( $1 >> 24 & 255 )))"; }
read -r size vma < <("$TRIPLET-objdump" -h "$STUB" | awk '$1 ~ /^[0-9]+$/ { s = $3; v = $4 } END { print s, v }')
for dir in "$IN"/*/; do
    medium=$(basename "$dir") uki=$OUT/uki-$(basename "$dir").efi
    next=$(align $(( 0x$vma + 0x$size )))
    args=()
    for pair in .osrel:os-release .cmdline:$medium/cmdline.txt .linux:vmlinuz .initrd:initrd.img; do
        section=${pair%%:*} file=$IN/${pair#*:}
        args+=(--add-section "$section=$file" --change-section-vma "$section=$(printf '0x%x' "$next")")
        next=$(align $(( next + $(stat -c %s "$file") )))
    done
    "$TRIPLET-objcopy" "${args[@]}" "$STUB" "$uki"
    # objcopy stamps the PE header with the current time (and a checksum over it), ignoring
    # SOURCE_DATE_EPOCH: pin the stamp to SOURCE_DATE_EPOCH and zero the checksum, which UEFI ignores.
    pe=$(od -An -tu4 -j 60 -N 4 "$uki" | tr -d ' ')
    le32 "$SOURCE_DATE_EPOCH" | dd of="$uki" bs=1 seek=$(( pe + 8 )) conv=notrunc status=none
    le32 0 | dd of="$uki" bs=1 seek=$(( pe + 88 )) conv=notrunc status=none
    echo "uki: $medium $(stat -c %s "$uki") bytes"
done
deb=$(echo "$DEBS"/systemd-boot-efi_*.deb)
{
    printf 'systemd-boot-efi\t%s\t%s\t%s\n' "$(dpkg-deb -f "$deb" Version)" "$(dpkg-deb -f "$deb" Architecture)" \
        "$(sha256sum "$deb" | cut -d' ' -f1)"
    dpkg-query -W -f '${Package}\t${Version}\n' "binutils-${TRIPLET//_/-}"
} > "$OUT/uki-packages.tsv"
