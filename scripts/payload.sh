#!/bin/bash
# payload stage, run inside the builder container (network none): what an installer carries for an
# offline install, compressed with the builder's xz so the bytes depend only on the inputs.
# Inputs: /bootkiln/in/{rootfs.tar,target-modules.tar}, BK_KERNEL_VERSION, SOURCE_DATE_EPOCH.
# Outputs in /work/out: rootfs.tar.xz, target-modules.tar.xz and payload.txt, the list the installer
# checks every file against before it uses it.
set -euo pipefail
: "${SOURCE_DATE_EPOCH:?}" "${BK_KERNEL_VERSION:?}"
export LC_ALL=C TZ=UTC
umask 022
OUT=/work/out
rm -rf "$OUT" && mkdir -p "$OUT"
for name in rootfs.tar target-modules.tar; do
    # One thread and a fixed preset: multi-threaded xz splits into blocks by timing-independent but
    # thread-count-dependent sizes; one thread gives the same stream on any machine.
    xz --threads=1 -6 --check=crc64 --stdout "/bootkiln/in/$name" > "$OUT/$name.xz"
done
{
    echo "format=1"
    echo "kernel_version=$BK_KERNEL_VERSION"
    for name in rootfs.tar.xz target-modules.tar.xz; do
        echo "file=$name $(stat -c %s "$OUT/$name") $(sha256sum "$OUT/$name" | cut -d' ' -f1)"
    done
} > "$OUT/payload.txt"
cat "$OUT/payload.txt"
