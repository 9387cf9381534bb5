# Shared by /init and the stages. POSIX sh as busybox ash runs it.

BK_MARKER=BOOTKILN-BOOT-OK

# Write to every console, so the serial log and the screen tell the same story.
log() {
    wrote=
    # ttyAMA0: QEMU virt's PL011 serial port (Graviton's is a 16550 on PCI: ttyS0).
    for tty in /dev/ttyS0 /dev/ttyAMA0 /dev/tty1; do
        if [ -c "$tty" ] && { echo "bootkiln: $*" > "$tty"; } 2>/dev/null; then wrote=1; fi
    done
    [ -n "$wrote" ] || echo "bootkiln: $*" > /dev/console
    return 0
}

fail() {
    log "ERROR: $*"
    log "dropping to a shell; type 'reboot -f' to restart"
    exec setsid cttyhack sh
}

# bootkiln.stage=NAME, bootkiln.debug, bootkiln.<key>=<value> become BK_* variables.
read_cmdline() {
    BK_STAGE=$(cat /etc/bootkiln/stage)
    BK_DEBUG=
    for word in $(cat /proc/cmdline); do
        case "$word" in
            bootkiln.stage=*) BK_STAGE=${word#bootkiln.stage=} ;;
            bootkiln.debug) BK_DEBUG=1 ;;
            bootkiln.*=*)
                key=${word#bootkiln.}; value=${key#*=}; key=${key%%=*}
                # Only plain names become variables: the command line is input, never code.
                case "$key" in ''|*[!a-z0-9_.-]*) continue ;; esac
                key=$(echo "$key" | tr 'a-z.-' 'A-Z__')
                eval "BK_${key}=\$value"
                export "BK_${key}"
                ;;
        esac
    done
    export BK_STAGE BK_DEBUG
    [ -n "$BK_DEBUG" ] && set -x
    return 0
}

setup_consoles() {
    # Serial at the speed the kernel was told, or 115200; the screen is tty1.
    for tty in /dev/ttyS0 /dev/ttyAMA0; do
        if [ -c "$tty" ]; then stty -F "$tty" 115200 2>/dev/null || true; fi
    done
    hostname "$(cat /etc/hostname 2>/dev/null || echo bootkiln)"
}

load_modules() {
    loaded=""
    failed=""
    while read -r module; do
        [ -n "$module" ] || continue
        if modprobe "$module" 2>/dev/null; then loaded="$loaded $module"; else failed="$failed $module"; fi
    done < /etc/bootkiln/modules
    log "modules loaded:${loaded:- none}"
    # A module for hardware this machine lacks (ena, xen) fails to load; that is expected.
    [ -z "$failed" ] || log "modules not loaded (no such device here?):$failed"
}

# Bring every wired interface up with DHCP; returns non-zero if none got an address.
network_up() {
    got=1
    for path in /sys/class/net/*; do
        iface=${path##*/}
        [ "$iface" = lo ] && continue
        ip link set "$iface" up
        if udhcpc -i "$iface" -n -q -t 5 -T 2 -s /usr/share/udhcpc/default.script >/dev/null 2>&1; then
            log "network: $iface $(ip -4 -o addr show dev "$iface" | awk '{print $4}')"
            got=0
        else
            log "network: no DHCP answer on $iface"
        fi
    done
    ip link set lo up
    return $got
}

# The firmware's SecureBoot variable, read through efivarfs: 1 (on), 0 (off), or none (no UEFI, a
# BIOS boot). It is the firmware's own word, which a boot test checks rather than trusting the loader.
secureboot_state() {
    [ -d /sys/firmware/efi ] || { echo none; return 0; }
    efivars=/sys/firmware/efi/efivars
    variable=$efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c
    mounted=
    if [ ! -e "$variable" ]; then
        modprobe efivarfs 2>/dev/null
        mount -t efivarfs -o ro,nosuid,nodev,noexec efivarfs "$efivars" 2>/dev/null && mounted=1
    fi
    # Four bytes of attributes, then the value (busybox's small od has no -j: take the fifth byte).
    # shellcheck disable=SC2046
    set -- $(od -An -tu1 "$variable" 2>/dev/null)
    state=${5:-}
    [ -z "$mounted" ] || umount "$efivars" 2>/dev/null
    echo "${state:-unknown}"
}

# The line boot tests wait for; it names the machine it booted on (x86_64, aarch64) and whether the
# firmware had Secure Boot on.
marker() {
    log "$BK_MARKER stage=$BK_STAGE secureboot=$(secureboot_state) $* arch=$(uname -m)"
}
