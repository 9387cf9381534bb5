#!/bin/bash
# binfmt stage step, run in a privileged builder container (network none): make sure the kernel runs
# the target's ELF binaries through qemu-user, so mmdebstrap can run a foreign Debian's maintainer
# scripts. binfmt_misc is global to the host kernel: an existing registration for the target is used
# as it is, a missing one is added with the F flag (the kernel opens the interpreter now, so it
# works in every container and chroot), and nothing is ever removed.
#   binfmt.sh ARCH        prints "binfmt: present NAME FLAGS" or "binfmt: registered NAME F"
#   binfmt.sh ARCH hold   the same, then keeps this container's binfmt_misc mount (and so, since
#                         Linux 6.7, the registration) alive until the container is removed: an
#                         emulated builder's every container needs the handler to start at all
set -euo pipefail
export LC_ALL=C
DIR=/proc/sys/fs/binfmt_misc
case "${1:-}" in
    arm64) NAME=qemu-aarch64 QEMU=/usr/bin/qemu-aarch64-static
        MAGIC='7f454c460201010000000000000000000200b700'
        MASK='ffffffffffffff00fffffffffffffffffeffffff' ;;
    amd64) NAME=qemu-x86_64 QEMU=/usr/bin/qemu-x86_64-static
        MAGIC='7f454c4602010100000000000000000002003e00'
        MASK='fffffffffffefe00fffffffffffffffffeffffff' ;;
    *) echo "usage: $0 arm64|amd64 [hold]" >&2; exit 2 ;;
esac
MODE=${2:-}
done_with() { echo "binfmt: $1"; if [ "$MODE" = hold ]; then exec sleep infinity; fi; exit 0; }

# An emulated builder may run on a host whose kernel runs the target natively (an arm64 builder under
# qemu-user on an amd64 host, building amd64): a handler would then hijack the host's own binaries.
if command -v arch-test > /dev/null && arch-test -n "$1" > /dev/null 2>&1; then
    done_with "native $1 (the kernel runs it without a handler)"
fi
if [ ! -e "$DIR/status" ]; then
    mount -t binfmt_misc binfmt_misc "$DIR" 2>/dev/null || {
        echo "binfmt.sh: cannot mount binfmt_misc (the container lacks CAP_SYS_ADMIN or the kernel has no binfmt_misc)" >&2
        exit 3; }
fi
for entry in "$DIR"/*; do
    case "${entry##*/}" in register|status) continue ;; esac
    if grep -qx enabled "$entry" && grep -qx "magic $MAGIC" "$entry"; then
        done_with "present ${entry##*/} $(sed -n 's/^flags: *//p' "$entry")"
    fi
done
[ -x "$QEMU" ] || { echo "binfmt.sh: the builder has no $QEMU" >&2; exit 3; }
hex() { sed 's/../\\x&/g' <<< "$1"; }
if ! printf ':%s:M::%s:%s:%s:F' "$NAME" "$(hex "$MAGIC")" "$(hex "$MASK")" "$QEMU" > "$DIR/register" 2>/dev/null; then
    echo "binfmt.sh: the kernel refused to register $NAME (read-only or foreign binfmt_misc)" >&2
    exit 3
fi
done_with "registered $NAME F"
