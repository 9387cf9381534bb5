#!/usr/bin/env bash
# Prepare a Debian host for bootkiln: system packages, a running Docker engine and the Python venv.
# Safe to run again: it installs only what is missing and starts Docker only if none answers.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi

PACKAGES=(
    docker.io       # the engine (dockerd) and CLI; testinfra's docker backend uses the CLI
    mmdebstrap      # makes the builder's Debian base where no registry is reachable
    uidmap          # lets mmdebstrap run unprivileged on hosts where that is wanted
    qemu-system-x86 # boot tests: BIOS (SeaBIOS) and
    ovmf            #   UEFI firmware
    qemu-system-arm #   arm64 images: qemu-system-aarch64 (virt, TCG on an x86 host)
    qemu-efi-aarch64 #  and its UEFI firmware (AAVMF)
    qemu-user-static # foreign (arm64) maintainer scripts and builders through binfmt_misc
    qemu-utils
    python3-venv
    cpio            # the unit tests read bootkiln's own cpio writer back with GNU cpio
    busybox-static  # the unit tests run the user-data reader with busybox alone, as the installer will
    nfs-ganesha     # a userspace NFS server for diskless boots (the kernel here may have no nfsd),
    nfs-ganesha-vfs #   its filesystem backend,
    rpcbind         #   and the portmapper it registers with (bootkiln runs it in a private namespace)
    kmod
    e2fsprogs       # debugfs: the installer tests read the installed disk's filesystems without mounting
    mtools          #   and its ESP
    ca-certificates
)

missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f '${db:Status-Status}' "$package" 2>/dev/null | grep -qx installed || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup-host: installing ${missing[*]}"
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

docker_answers() { "${SUDO[@]}" docker info >/dev/null 2>&1; }
if ! docker_answers; then
    if [ -d /run/systemd/system ] && "${SUDO[@]}" systemctl start docker 2>/dev/null && docker_answers; then
        echo "setup-host: started docker.service"
    else
        # No init system to ask (containers, CI sandboxes): run the daemon directly. The default
        # bridge network and its iptables rules stay off: bootkiln uses only host and none networks.
        echo "setup-host: starting dockerd (log: /var/log/bootkiln-dockerd.log)"
        "${SUDO[@]}" sh -c 'nohup dockerd --bridge=none --iptables=false --ip6tables=false \
            >/var/log/bootkiln-dockerd.log 2>&1 &'
        for _ in $(seq 60); do docker_answers && break; sleep 0.5; done
        docker_answers || { tail -n 20 /var/log/bootkiln-dockerd.log >&2; echo "setup-host: dockerd did not start" >&2; exit 1; }
    fi
fi
if [ "$(id -u)" -ne 0 ] && ! docker info >/dev/null 2>&1; then
    echo "setup-host: Docker runs, but $(id -un) may not use it: sudo usermod -aG docker $(id -un), then log in again" >&2
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
echo "setup-host: ready (Docker $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'), venv .venv)"
