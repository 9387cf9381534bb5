#!/bin/bash
# ukisign stage, run inside a fresh builder container (network none): signs the Unified Kernel Image
# with the profile's own key. Inputs: /bootkiln/in/uki-<medium>.efi, /bootkiln/sb/db.{key,crt} (uploaded
# for this run only; never copied to /work/out). Outputs: /work/out/uki-<medium>-signed.efi.
set -euo pipefail
: "${SOURCE_DATE_EPOCH:?}"
export LC_ALL=C TZ=UTC
umask 077
OUT=/work/out
rm -rf "$OUT" && mkdir -p "$OUT"

# sbsign puts the clock into the signature's signingTime attribute (OpenSSL reads it with time()):
# a preloaded time() returning SOURCE_DATE_EPOCH makes the signature the same on every run.
cat > /tmp/sde-time.c <<'C'
#include <stdlib.h>
#include <time.h>
time_t time(time_t *out) {
    time_t now = (time_t)strtoll(getenv("SOURCE_DATE_EPOCH"), NULL, 10);
    if (out) *out = now;
    return now;
}
C
gcc -shared -fPIC -O2 -o /tmp/sde-time.so /tmp/sde-time.c
# sbsign warns of "data remaining" (objcopy's padding between sections); its hash covers that data.
for uki in /bootkiln/in/uki-*.efi; do
    signed=$OUT/$(basename "$uki" .efi)-signed.efi
    LD_PRELOAD=/tmp/sde-time.so sbsign --key /bootkiln/sb/db.key --cert /bootkiln/sb/db.crt --output "$signed" "$uki"
    sbverify --cert /bootkiln/sb/db.crt "$signed"
    chmod 0644 "$signed"
done
