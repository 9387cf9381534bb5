# The installer stage's steps (lib/bootkiln/stages/installer reads like a table of contents).
# POSIX sh for busybox ash. Settings baked in by the build: /etc/bootkiln/installer.

STEP=start
DISK_TOUCHED=0
LVMCONF='devices { obtain_device_list_from_udev = 0 } activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }'
. /etc/bootkiln/installer   # BOOT_MIB ESP_MIB MIRROR SUITE VARIANT PACKAGES KERNEL_PACKAGE (from the profile)

# The boot partitions follow the machine's firmware, as scripts/disk.sh lays out the installer's disk
# image: amd64 has a BIOS boot partition (p1), the ESP (p2) and /boot (p3); arm64 boots UEFI only,
# so its ESP is p1 and /boot p2. The user-data's partitions come after them.
case "$(uname -m)" in
    aarch64) ESP_NUM=1 BOOT_NUM=2 GRUB_EFI=arm64-efi GRUB_BIOS= ;;
    *) ESP_NUM=2 BOOT_NUM=3 GRUB_EFI=x86_64-efi GRUB_BIOS=i386-pc ;;
esac
FIRST_NUM=$((BOOT_NUM + 1))

step() {
    STEP=$1
    shift
    log "installer: [$STEP] $* (at $(cut -d' ' -f1 /proc/uptime)s)"
}

abort() {
    log "installer: step '$STEP' failed: $*"
    if [ "$DISK_TOUCHED" = 1 ]; then
        log "installer: $BK_DISK_DEVICE is partly written; fix the cause, then boot the installer again with disk.wipe=true"
    else
        log "installer: no disk was changed"
    fi
    log "BOOTKILN-INSTALL-FAILED step=$STEP"
    fail "the install stopped"
}

# run CMD...: the command's output goes to the consoles as it comes, indented; a failure stops
# the install.
run() {
    log "installer: \$ $*"
    (
        set -o pipefail
        "$@" 2>&1 | while IFS= read -r line; do log "  $line"; done
    )
    status=$?
    [ $status -eq 0 ] || abort "'$*' exited with status $status"
}

in_tools() { chroot "$T" "$@"; }
lvm_() { run chroot "$T" lvm "$@" --config "$LVMCONF"; }

# --- user-data -------------------------------------------------------------------------------------
# http_put_token HOST PORT PATH OUT HEADER: a PUT (busybox wget cannot send one) over nc; prints
# the HTTP status (000: no answer) and leaves the body in OUT. Only for IMDS's token.
http_put_token() {
    host=$1 port=$2 path=$3 out=$4 header=$5
    printf 'PUT %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: 0\r\n%s\r\n\r\n' \
        "$path" "$host" "$header" | nc -w 10 "$host" "$port" > "$out.raw" 2>/dev/null
    : > "$out"
    head_bytes=$(awk '{ n += length($0) + 1 } /^\r?$/ { print n; found = 1; exit } END { if (!found) print 0 }' "$out.raw")
    status=$(head -n 1 "$out.raw" | awk '/^HTTP\/1\.[01] [0-9][0-9][0-9]/ { print $2 }')
    if [ -z "$status" ] || [ "$head_bytes" = 0 ]; then
        echo 000
    else
        tail -c +$((head_bytes + 1)) "$out.raw" > "$out"
        echo "$status"
    fi
    rm -f "$out.raw"
}

# http_get URL OUT [HEADER]: busybox wget, which speaks HTTP/1.1 (Debian's CDN refuses 1.0); prints
# the HTTP status (000: no answer) and leaves the body in OUT.
http_get() {
    url=$1 out=$2 header=${3:-}
    rm -f "$out"
    if [ -n "$header" ]; then
        wget -S -T 30 -O "$out" --header "$header" "$url" 2> "$out.err"
    else
        wget -S -T 30 -O "$out" "$url" 2> "$out.err"
    fi
    status=$(grep -o 'HTTP/1\.[01] [0-9][0-9][0-9]' "$out.err" | tail -n 1 | cut -d' ' -f2)
    rm -f "$out.err"
    [ -f "$out" ] || : > "$out"
    echo "${status:-000}"
}

fetch_userdata() {
    dest=$1
    if [ -n "${BK_USERDATA:-}" ]; then
        # bootkiln.userdata=http://HOST[:PORT]/PATH on the kernel command line
        case "$BK_USERDATA" in
            http://*) ;;
            *) abort "bootkiln.userdata=$BK_USERDATA: only http:// URLs are supported" ;;
        esac
        status=$(http_get "$BK_USERDATA" "$dest")
        [ "$status" = 200 ] || abort "GET $BK_USERDATA answered HTTP $status"
        return 0
    fi
    imds=169.254.169.254
    status=000
    for attempt in 1 2 3 4 5; do
        status=$(http_put_token $imds 80 /latest/api/token "$RUN/token" "X-aws-ec2-metadata-token-ttl-seconds: 21600")
        [ "$status" = 000 ] || break
        sleep 2
    done
    if [ "$status" = 200 ]; then
        token=$(cat "$RUN/token")
        # The token goes into a header: it must be one plain word.
        case "$token" in ''|*[!A-Za-z0-9_=+/.-]*) abort "IMDS returned a malformed token" ;; esac
        log "installer: IMDSv2 session token received"
        status=$(http_get "http://$imds/latest/user-data" "$dest" "X-aws-ec2-metadata-token: $token")
    elif [ "$status" = 000 ]; then
        abort "the instance metadata service at $imds does not answer"
    else
        log "installer: no IMDSv2 token (HTTP $status); trying IMDSv1"
        status=$(http_get "http://$imds/latest/user-data" "$dest")
    fi
    rm -f "$RUN/token"
    case "$status" in
        200) ;;
        404) abort "this instance has no user-data (IMDS answered 404); launch it with the document 'invoke userdata' writes" ;;
        401|403) abort "IMDS refused the user-data request (HTTP $status)" ;;
        *) abort "IMDS answered HTTP $status for /latest/user-data" ;;
    esac
}

# --- the boot medium and the payload ---------------------------------------------------------------
parent_disk() {  # /dev/vda3 -> /dev/vda
    echo "/dev/$(basename "$(readlink -f "/sys/class/block/${1#/dev/}/..")")"
}

part_dev() {  # part_dev DISK N: /dev/vdb 1 -> /dev/vdb1, /dev/nvme0n1 1 -> /dev/nvme0n1p1
    case "$1" in *[0-9]) echo "${1}p$2" ;; *) echo "$1$2" ;; esac
}

find_medium() {
    MEDIUM_DEV= MEDIUM_KIND= BOOT_PART= BOOT_DISK= KERNEL_IMAGE=
    tries=0
    while [ -z "$MEDIUM_DEV" ] && [ $tries -lt 20 ]; do
        for dev in /dev/sr* /dev/vd* /dev/xvd* /dev/sd* /dev/nvme*n*; do
            [ -b "$dev" ] || continue
            if mount -t iso9660 -o ro "$dev" /run/medium 2>/dev/null; then
                if [ -f /run/medium/bootkiln.id ] && [ -f /run/medium/boot/vmlinuz ]; then
                    MEDIUM_DEV=$dev MEDIUM_KIND=iso KERNEL_IMAGE=/run/medium/boot/vmlinuz
                    break
                fi
                umount /run/medium
            elif mount -t ext4 -o ro "$dev" /run/medium 2>/dev/null; then
                if [ -f /run/medium/bootkiln-installer ] && [ -f /run/medium/vmlinuz ]; then
                    MEDIUM_DEV=$dev MEDIUM_KIND=disk KERNEL_IMAGE=/run/medium/vmlinuz
                    BOOT_PART=$dev BOOT_DISK=$(parent_disk "$dev")
                    break
                fi
                umount /run/medium
            fi
        done
        [ -n "$MEDIUM_DEV" ] || { tries=$((tries + 1)); sleep 1; }
    done
    [ -n "$MEDIUM_DEV" ] || abort "no bootkiln installer medium found (block devices: $(ls /sys/class/block | tr '\n' ' '))"
    PAYLOAD_REL=bootkiln-payload
    PAYLOAD=/run/medium/$PAYLOAD_REL
}

check_payload() {
    [ -f "$PAYLOAD/payload.txt" ] || abort "offline install asked for, but $MEDIUM_DEV carries no payload"
    grep '^file=' "$PAYLOAD/payload.txt" | while read -r entry size sum; do
        name=${entry#file=}
        [ -f "$PAYLOAD/$name" ] || { echo "missing"; break; }
        [ "$(stat -c %s "$PAYLOAD/$name")" = "$size" ] || { echo "$name has the wrong size"; break; }
        [ "$(sha256sum "$PAYLOAD/$name" | cut -d' ' -f1)" = "$sum" ] || { echo "$name fails its sha256"; break; }
    done > "$RUN/payload.check"
    [ ! -s "$RUN/payload.check" ] || abort "the payload on $MEDIUM_DEV is damaged: $(cat "$RUN/payload.check")"
    log "installer: payload checked ($(grep -c '^file=' "$PAYLOAD/payload.txt") files, sha256)"
}

# /dev, /proc and /sys for the tools root, the medium inside it, and the modules of the installed
# kernel (the same version as this one) so its modprobe can load xfs, vfat and the rest.
tools_mounts() {
    for fs in dev proc sys; do
        mkdir -p "$T/$fs"
        mount --bind "/$fs" "$T/$fs" || abort "cannot bind /$fs into the tools root"
    done
    mkdir -p "$T/run/medium" "$T/run/lvm" "$T/run/lock/lvm" "$T$TARGET"
    mount --bind /run/medium "$T/run/medium" || abort "cannot bind the medium into the tools root"
    mkdir -p "$T/etc"
    cp /etc/resolv.conf "$T/etc/resolv.conf" 2>/dev/null
    if [ -f "$PAYLOAD/target-modules.tar.xz" ]; then
        xz -dc "$PAYLOAD/target-modules.tar.xz" | tar -x -C "$T" || abort "cannot unpack the target's modules"
    fi
    in_tools modprobe -a dm_mod xfs vfat nls_cp437 nls_ascii nls_utf8 2>/dev/null
    return 0
}

# --- the disk ----------------------------------------------------------------------------------------
# Before the tools exist (unpacking them takes a while under emulation): what the kernel and
# busybox can see already, a partition table or a filesystem, is enough to refuse a disk early.
quick_disk_check() {
    DISK=$BK_DISK_DEVICE
    tries=0
    while [ ! -b "$DISK" ] && [ $tries -lt 10 ]; do tries=$((tries + 1)); sleep 1; done
    [ -b "$DISK" ] || abort "$DISK does not exist here (disks: $(ls /sys/block | tr '\n' ' '))"
    [ "$BK_DISK_WIPE" != true ] || return 0
    [ "$DISK" != "$BOOT_DISK" ] || return 0
    name=${DISK#/dev/}
    partitions=$(cd "/sys/block/$name" 2>/dev/null && ls -d "$name"* 2>/dev/null | tr '\n' ' ')
    signature=$(blkid "$DISK" 2>/dev/null | sed -n 's/.* TYPE="\([^"]*\)".*/\1/p')
    if [ -n "$partitions$signature" ]; then
        abort "$DISK is not empty (partitions: ${partitions:-none}; filesystem: ${signature:-none}); set disk.wipe=true in the user-data to erase it"
    fi
}

# Every filesystem the layout asks for needs its mkfs in the tools root: find out before any disk is touched.
check_tools() {
    for tool in sfdisk wipefs blkid mkfs.ext4 mkfs.vfat $(awk '{ print $4 == "swap" ? "mkswap" : $4 == "lvm" ? "lvm" : "mkfs." $4 }' "$UD/layout" | sort -u); do
        [ -x "$T/usr/sbin/$tool" ] || [ -x "$T/sbin/$tool" ] || [ -x "$T/usr/bin/$tool" ] \
            || abort "the layout needs $tool, which this installer's Debian does not have (add its package to rootfs.packages)"
    done
}

check_target_disk() {
    check_tools
    DISK=$BK_DISK_DEVICE
    tries=0
    while [ ! -b "$DISK" ] && [ $tries -lt 10 ]; do tries=$((tries + 1)); sleep 1; done
    [ -b "$DISK" ] || abort "$DISK does not exist here (disks: $(ls /sys/block | tr '\n' ' '))"
    name=${DISK#/dev/}
    [ -d "/sys/block/$name" ] || abort "$DISK is not a whole disk"
    case "$MEDIUM_KIND:$MEDIUM_DEV" in
        iso:"$DISK"|iso:"$DISK"[0-9]*|iso:"${DISK}p"[0-9]*) abort "$DISK is the installer's own medium" ;;
    esac
    WIPE= APPEND=
    partitions=$(cd "/sys/block/$name" && ls -d "$name"* 2>/dev/null | tr '\n' ' ')
    if [ -n "$BOOT_DISK" ] && [ "$DISK" = "$BOOT_DISK" ]; then
        # The AMI case: the installer booted from this disk. Its three partitions stay; the
        # layout goes after them, and anything else already there needs wipe.
        APPEND=1
        others=$(echo "$partitions" | tr ' ' '\n' | grep -v -x -e "${name}p\{0,1\}[123]" | grep . | tr '\n' ' ')
        if [ -n "$others" ] && [ "$BK_DISK_WIPE" != true ]; then
            abort "$DISK holds partitions besides the installer's ($others); set disk.wipe=true to replace them"
        fi
        OLD_PARTITIONS=$others
        return 0
    fi
    signatures=$(in_tools wipefs --noheadings --output TYPE "$DISK" 2>/dev/null | sort -u | tr '\n' ' ')
    for part in $partitions; do
        signatures="$signatures$(in_tools wipefs --noheadings --output TYPE "/dev/$part" 2>/dev/null | sort -u | tr '\n' ' ')"
    done
    if [ -n "$signatures$partitions" ]; then
        if [ "$BK_DISK_WIPE" != true ]; then
            abort "$DISK is not empty (partitions: ${partitions:-none}; signatures: ${signatures:-none}); set disk.wipe=true in the user-data to erase it"
        fi
        WIPE=1
        OLD_PARTITIONS=$partitions
    fi
    log "installer: $DISK is $( [ -n "$WIPE" ] && echo "not empty; wipe=true: erasing it" || echo empty)"
}

gpt_type() {
    case "$1" in
        lvm) echo E6D6D379-F507-44C2-A23C-238F2A3DF928 ;;
        swap) echo 0657FD6D-A4AB-43C4-84E5-0933C84B4F4F ;;
        vfat) echo EBD0A0A2-B9E5-4433-87C0-68B6B72699C7 ;;
        *) echo 0FC63DAF-8483-4772-8E79-3D69D8477DE4 ;;
    esac
}

partition_disk() {
    for part in $OLD_PARTITIONS; do run in_tools wipefs --all --quiet "/dev/$part"; done
    script=$RUN/sfdisk.in
    : > "$RUN/devices"      # NAME DEVICE FS MOUNT, for every filesystem and swap to make
    NEW_BOOT=
    if [ -n "$APPEND" ]; then
        # The disk may be larger than the image it came from: move the backup GPT to its end.
        run in_tools sfdisk --quiet --no-reread --no-tell-kernel --relocate gpt-bak-std "$DISK"
        for number in $(seq "$FIRST_NUM" 16); do
            [ -b "$(part_dev "$DISK" $number)" ] && run in_tools sfdisk --quiet --no-reread --no-tell-kernel --delete "$DISK" $number
        done
        first=$FIRST_NUM options="--append --wipe never --no-reread --no-tell-kernel"
        : > "$script"
        BOOT_DEV=$BOOT_PART ESP_DEV=$(part_dev "$BOOT_DISK" $ESP_NUM) GRUB_DISK=$BOOT_DISK
    elif [ "$MEDIUM_KIND" = disk ]; then
        # /boot stays the installer's partition on the disk it booted from, and GRUB stays there.
        [ -z "$WIPE" ] || run in_tools wipefs --all --quiet "$DISK"
        first=1 options="--wipe always"
        echo "label: gpt" > "$script"
        BOOT_DEV=$BOOT_PART ESP_DEV=$(part_dev "$BOOT_DISK" $ESP_NUM) GRUB_DISK=$BOOT_DISK
    else
        # From an ISO: the disk gets the boot partitions an AMI's disk image has.
        [ -z "$WIPE" ] || run in_tools wipefs --all --quiet "$DISK"
        first=$FIRST_NUM options="--wipe always" NEW_BOOT=1
        {
            echo "label: gpt"
            [ -z "$GRUB_BIOS" ] || echo 'size=1MiB, type=21686148-6449-6E6F-744E-656564454649, name="bios-boot"'
            echo "size=${ESP_MIB}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"esp\""
            echo "size=${BOOT_MIB}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"boot\""
        } > "$script"
        BOOT_DEV=$(part_dev "$DISK" $BOOT_NUM) ESP_DEV=$(part_dev "$DISK" $ESP_NUM) GRUB_DISK=$DISK
    fi
    number=$first
    while read -r kind name size fs mount; do
        [ "$kind" = part ] || continue
        sizefield=
        [ "$size" = rest ] || sizefield="size=${size}MiB, "
        echo "${sizefield}type=$(gpt_type "$fs"), name=\"$name\"" >> "$script"
        echo "$name $(part_dev "$DISK" $number) $fs $mount" >> "$RUN/devices"
        number=$((number + 1))
    done < "$UD/layout"
    log "installer: partition table for $DISK:"
    while IFS= read -r line; do log "  $line"; done < "$script"
    run in_tools sfdisk --quiet --wipe-partitions always $options "$DISK" < "$script"
    # The installer's own partition is mounted, so the kernel cannot re-read the whole table: tell
    # it about the new partitions only.
    [ -z "$APPEND" ] || run in_tools partx --update --nr "$first:" "$DISK"
    while read -r name dev fs mount; do wait_for_device "$dev"; done < "$RUN/devices"
}

wait_for_device() {
    tries=0
    while [ ! -b "$1" ] && [ $tries -lt 20 ]; do tries=$((tries + 1)); sleep 0.5; done
    [ -b "$1" ] || abort "$1 did not appear"
}

make_volume_group() {
    pv=$(awk -v n="$BK_VG_PV" '$1 == n { print $2 }' "$RUN/devices")
    grep -v "^$BK_VG_PV " "$RUN/devices" > "$RUN/devices.new"
    mv "$RUN/devices.new" "$RUN/devices"
    lvm_ pvcreate --force --force --yes "$pv"
    lvm_ vgcreate --yes "$BK_VG" "$pv"
    while read -r kind name size fs mount; do
        [ "$kind" = lv ] || continue
        if [ "$size" = rest ]; then sizeopt="--extents 100%FREE"; else sizeopt="--size ${size}m"; fi
        # shellcheck disable=SC2086
        lvm_ lvcreate --yes --wipesignatures y --zero y --name "$name" $sizeopt "$BK_VG"
        echo "$name /dev/$BK_VG/$name $fs $mount" >> "$RUN/devices"
        wait_for_device "/dev/$BK_VG/$name"
    done < "$UD/layout"
}

make_filesystems() {
    if [ -n "$NEW_BOOT" ]; then
        run in_tools mkfs.vfat -F 32 -n ESP "$ESP_DEV"
        run in_tools mkfs.ext4 -q -F -L boot "$BOOT_DEV"
    fi
    while read -r name dev fs mount; do
        label=$(echo "$name" | cut -c1-12)
        case "$fs" in
            ext4) run in_tools mkfs.ext4 -q -F -L "$label" "$dev" ;;
            xfs) run in_tools mkfs.xfs -q -f -L "$label" "$dev" ;;
            vfat) run in_tools mkfs.vfat -n "$(echo "$label" | cut -c1-11 | tr 'a-z-' 'A-Z_')" "$dev" ;;
            swap) run in_tools mkswap -L "$label" "$dev" ;;
        esac
    done < "$RUN/devices"
}

# --- the target -----------------------------------------------------------------------------------------
TT=
mount_target() {
    TT=$T$TARGET
    : > "$RUN/mounts"
    # Parents before children: sort by the number of slashes (/ has none left after the sed).
    awk '$4 != "-" { n = gsub("/", "/", $4); if ($4 == "/") n = 0; print n, $0 }' "$RUN/devices" | sort -n \
        | while read -r depth name dev fs mount; do
            mkdir -p "$TT$mount"
            mount -t "$fs" "$dev" "$TT$mount" || { echo "$dev on $mount" > "$RUN/mount.failed"; break; }
            echo "$TT$mount" >> "$RUN/mounts"
        done
    [ ! -f "$RUN/mount.failed" ] || abort "cannot mount $(cat "$RUN/mount.failed")"
    mkdir -p "$TT/boot"
    if [ "$MEDIUM_KIND" = disk ]; then
        # The installer's own partition becomes /boot: writable from now on, then the target's.
        mount -o remount,rw /run/medium || abort "cannot make $BOOT_PART writable"
        mount --bind /run/medium "$TT/boot" || abort "cannot mount $BOOT_PART on /boot"
    else
        mount -t ext4 "$BOOT_DEV" "$TT/boot" || abort "cannot mount $BOOT_DEV on /boot"
    fi
    echo "$TT/boot" >> "$RUN/mounts"
    mkdir -p "$TT/boot/efi"
    mount -t vfat "$ESP_DEV" "$TT/boot/efi" || abort "cannot mount the ESP $ESP_DEV on /boot/efi"
    echo "$TT/boot/efi" >> "$RUN/mounts"
    log "installer: mounted: $(awk '$4 != "-" { printf "%s=%s ", $4, $2 }' "$RUN/devices")/boot=$BOOT_DEV /boot/efi=$ESP_DEV"
}

target_mounts() {
    grep -qx "$TT/dev" "$RUN/mounts" && return 0
    for fs in dev proc sys; do
        mount --bind "/$fs" "$TT/$fs" || abort "cannot bind /$fs into the target"
        echo "$TT/$fs" >> "$RUN/mounts"
    done
}

# busybox xz decompresses (the rootfs has no xz binary); GNU tar from the tools root keeps the
# xattrs and ACLs (file capabilities) that busybox tar would drop, and keeps /lib -> usr/lib a link
# when the modules archive brings lib/modules.
unpack_into_target() {  # unpack_into_target ARCHIVE.tar.xz
    (
        set -o pipefail
        xz -dc "$1" | chroot "$T" tar --extract --xattrs --xattrs-include='*' --acls --numeric-owner \
            --keep-directory-symlink --same-permissions --file - --directory "$TARGET"
    )
}

uuid_of() { in_tools blkid -s UUID -o value "$1"; }

configure_system() {
    {
        echo "# /etc/fstab: written by the bootkiln installer from this machine's user-data"
        echo "# <file system> <mount point> <type> <options> <dump> <pass>"
        while read -r name dev fs mount; do
            case "$fs" in
                swap) echo "UUID=$(uuid_of "$dev") none swap sw 0 0" ;;
                *) if [ "$mount" = / ]; then options=errors=remount-ro pass=1; else options=defaults pass=2; fi
                   echo "UUID=$(uuid_of "$dev") $mount $fs $options 0 $pass" ;;
            esac
        done < "$RUN/devices"
        echo "UUID=$(uuid_of "$BOOT_DEV") /boot ext4 defaults 0 2"
        echo "UUID=$(uuid_of "$ESP_DEV") /boot/efi vfat umask=0077 0 1"
    } > "$TT/etc/fstab"
    grep -q 'UUID= ' "$TT/etc/fstab" && abort "a filesystem has no UUID: $(grep 'UUID= ' "$TT/etc/fstab")"
    while IFS= read -r line; do log "  fstab: $line"; done < "$TT/etc/fstab"
    short=${BK_HOSTNAME%%.*}
    echo "$short" > "$TT/etc/hostname"
    {
        echo "127.0.0.1	localhost"
        if [ "$short" = "$BK_HOSTNAME" ]; then echo "127.0.1.1	$short"; else echo "127.0.1.1	$BK_HOSTNAME $short"; fi
        echo "::1	localhost ip6-localhost ip6-loopback"
        echo "ff02::1	ip6-allnodes"
        echo "ff02::2	ip6-allrouters"
    } > "$TT/etc/hosts"
    # A machine-id of its own, made on the first boot.
    : > "$TT/etc/machine-id"
}

install_puppet() {
    ssl=$TT/var/lib/puppet/ssl
    name=$BK_PUPPET_CERTNAME
    mkdir -p "$ssl/certs" "$ssl/private_keys" "$ssl/public_keys" "$TT/etc/puppet" "$TT/var/lib/bootkiln"
    cp "$UD/ca.pem" "$ssl/certs/ca.pem"
    cp "$UD/crl.pem" "$ssl/crl.pem"
    cp "$UD/cert.pem" "$ssl/certs/$name.pem"
    (umask 077 && cp "$UD/key.pem" "$ssl/private_keys/$name.pem")
    rm -f "$UD/key.pem"
    chown -R 0:0 "$ssl"
    chmod 0771 "$ssl"
    chmod 0755 "$ssl/certs" "$ssl/public_keys"
    chmod 0750 "$ssl/private_keys"
    chmod 0644 "$ssl/certs/ca.pem" "$ssl/crl.pem" "$ssl/certs/$name.pem"
    chmod 0600 "$ssl/private_keys/$name.pem"
    run chroot "$TT" openssl pkey -in "/var/lib/puppet/ssl/private_keys/$name.pem" -pubout \
        -out "/var/lib/puppet/ssl/public_keys/$name.pem"
    chmod 0644 "$ssl/public_keys/$name.pem"
    cat > "$TT/etc/puppet/puppet.conf" <<EOF
# Written by the bootkiln installer from this machine's user-data.
[main]
ssldir = /var/lib/puppet/ssl
certname = $name
server = $BK_PUPPET_SERVER
environment = $BK_PUPPET_ENVIRONMENT
EOF
    : > "$TT/var/lib/bootkiln/puppet-first-run"
    log "installer: puppet: CA, CRL, certificate and key (0600) in /var/lib/puppet/ssl; first agent run at boot"
}

# The installer's own files leave its partition once the system is unpacked: /boot is the
# installed system's now, and needs the room for its initramfs.
clear_installer_files() {
    [ "$MEDIUM_KIND" = disk ] || return 0
    rm -rf "$TT/boot/bootkiln-payload" "$TT/boot/vmlinuz" "$TT/boot/initrd.img" "$TT/boot/bootkiln-installer" \
        "$TT/boot/grub"
    log "installer: the installer's files are gone from $BOOT_PART; $(df -m "$TT/boot" | awk 'NR == 2 { print $4 }') MiB free on /boot"
}

install_bootloader() {
    [ -z "$GRUB_BIOS" ] || run chroot "$TT" grub-install --target="$GRUB_BIOS" --boot-directory=/boot "$GRUB_DISK"
    run chroot "$TT" grub-install --target="$GRUB_EFI" --efi-directory=/boot/efi --boot-directory=/boot \
        --removable --no-nvram
    root_dev=$(awk '$4 == "/" { print $2 }' "$RUN/devices")
    if [ -n "$BK_VG" ] && [ "${root_dev#/dev/$BK_VG/}" != "$root_dev" ]; then
        # initramfs-tools activates the volume group of a /dev/mapper root.
        root_spec=/dev/mapper/$(echo "$BK_VG" | sed 's/-/--/g')-$(echo "${root_dev#/dev/$BK_VG/}" | sed 's/-/--/g')
    else
        root_spec=UUID=$(uuid_of "$root_dev")
    fi
    consoles=$(tr ' ' '\n' < /proc/cmdline | grep '^console=' | tr '\n' ' ')
    cat > "$TT/boot/grub/grub.cfg" <<EOF
# Written by the bootkiln installer.
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set default=0
set timeout=1
search --no-floppy --fs-uuid --set=root $(uuid_of "$BOOT_DEV")
menuentry 'Debian GNU/Linux ($BK_HOSTNAME)' {
	linux /vmlinuz-$KVER root=$root_spec ro $consoles
	initrd /initrd.img-$KVER
}
EOF
    log "installer: GRUB boots /vmlinuz-$KVER with root=$root_spec"
}

finish_target() {
    sync
    sort -r "$RUN/mounts" | while read -r mountpoint; do umount "$mountpoint" || log "installer: cannot unmount $mountpoint"; done
    [ -z "$BK_VG" ] || lvm_ vgchange --activate n "$BK_VG"
    sync
}

# --- online: debootstrap against the mirror ---------------------------------------------------------
# The tools root comes from the archive too: the .debs listed in /etc/bootkiln/online-tools (pool
# path, size, sha256, pinned when the installer was built), each checked before it is unpacked.
deb_extract() {  # deb_extract DEB DIR: a .deb is an ar archive; its data.tar.* member holds the files
    deb=$1 dir=$2
    offset=8
    total=$(stat -c %s "$deb")
    while [ $offset -lt "$total" ]; do
        header=$(dd if="$deb" bs=1 skip=$offset count=60 2>/dev/null)
        member=$(echo "$header" | cut -c1-16 | tr -d ' ' | sed 's|/$||')
        size=$(echo "$header" | cut -c49-58 | tr -d ' ')
        case "$member" in
            data.tar*)
                tail -c +$((offset + 61)) "$deb" | head -c "$size" > "$RUN/data.tar"
                case "$member" in
                    *.xz) xz -dc "$RUN/data.tar" | tar -x -C "$dir" ;;
                    *.gz) gzip -dc "$RUN/data.tar" | tar -x -C "$dir" ;;
                    *) tar -x -C "$dir" -f "$RUN/data.tar" ;;
                esac
                status=$?
                rm -f "$RUN/data.tar"
                return $status
                ;;
        esac
        offset=$((offset + 60 + size + size % 2))
    done
    return 1
}

online_tools() {
    [ -s /etc/bootkiln/online-tools ] || abort "this installer was built without the online tool list"
    mkdir -p "$RUN/debs"
    count=0
    while read -r path size sum; do
        deb=$RUN/debs/${path##*/}
        status=$(http_get "$MIRROR/$path" "$deb")
        [ "$status" = 200 ] || abort "GET $MIRROR/$path answered HTTP $status"
        [ "$(sha256sum "$deb" | cut -d' ' -f1)" = "$sum" ] || abort "$path from $MIRROR fails its sha256"
        deb_extract "$deb" "$T" || abort "cannot unpack $path"
        rm -f "$deb"
        count=$((count + 1))
    done < /etc/bootkiln/online-tools
    log "installer: tools root from $count packages of $MIRROR (each checked against its pinned sha256)"
}

online_install() {
    # debootstrap makes the base; apt (which resolves dependencies properly) adds the profile's
    # packages, whose postinsts then run in a complete system. The kernel comes last (online_kernel),
    # once fstab and the initramfs settings are in place, so its initramfs is made once, right.
    run chroot "$T" debootstrap --variant="$VARIANT" --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
        "$SUITE" "$TARGET" "$MIRROR"
    (cd "$TT" && tar -x -f /etc/bootkiln/target-overlay.tar) || abort "cannot add the profile's overlay"
    target_mounts
    target_apt $(echo "$PACKAGES" | tr ',' ' ')
}

# target_apt PACKAGE...: apt-get install in the target, with a real resolv.conf for the while
# (systemd-resolved's is a link into /run, empty in a chroot).
target_apt() {
    resolv=$TT/etc/resolv.conf
    if [ -L "$resolv" ]; then mv "$resolv" "$resolv.bootkiln"; fi
    cp /etc/resolv.conf "$resolv"
    run chroot "$TT" env DEBIAN_FRONTEND=noninteractive apt-get install -q -y --no-install-recommends "$@"
    if [ -L "$resolv" ]; then
        rm -f "$resolv.bootkiln"   # a package made it a link again: keep the package's
    elif [ -L "$resolv.bootkiln" ]; then
        mv -f "$resolv.bootkiln" "$resolv"
    fi
}

online_kernel() {
    target_apt "$KERNEL_PACKAGE"
    KVER=$(ls "$TT/lib/modules" | head -n 1)
    [ -n "$KVER" ] || abort "$KERNEL_PACKAGE installed no kernel"
}
