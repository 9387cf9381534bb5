# Sourced by stage scripts. Points a private apt configuration at the PROFILE's archive state
# (mirror or snapshot, suite, components), not at the builder's own sources, and keeps its lists
# and downloads in the build volume.
#   archive_apt_update [with-sources]    then: apt-get "${ARCHIVE_APT[@]}" download|source ...
: "${BK_MIRROR:?}" "${BK_SUITE:?}" "${BK_COMPONENTS:?}" "${BK_ARCH:?}"

# A download folder apt's unprivileged _apt user may write to (apt warns and runs unsandboxed otherwise).
apt_download_dir() {
    mkdir -p "$1"
    if id _apt > /dev/null 2>&1; then chown _apt:root "$1"; fi
}

archive_apt_update() {
    local dir=/work/apt components="${BK_COMPONENTS//,/ }"
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
    {
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $BK_MIRROR $BK_SUITE $components"
        # A profile can take one package (the kernel) from another source, e.g. backports.
        if [ -n "${BK_KERNEL_APT_SOURCE:-}" ]; then echo "$BK_KERNEL_APT_SOURCE"; fi
        if [ "${1:-}" = with-sources ]; then
            echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $BK_MIRROR $BK_SUITE $components"
        fi
    } > "$dir/sources.list"
    ARCHIVE_APT=(
        -o "Dir::Etc::SourceList=$dir/sources.list"
        -o "Dir::Etc::SourceParts=/nonexistent"
        -o "Dir::State::Lists=$dir/lists"
        -o "Dir::Cache=$dir/cache"
        -o "APT::Architecture=$BK_ARCH"
        -o "APT::Architectures::=$BK_ARCH"
        -o "Acquire::Retries=3"
        -o "Acquire::http::Timeout=30"
    )
    if [ -n "${BK_SNAPSHOT:-}" ]; then
        # Snapshot Release files carry a Valid-Until long past; the pinned time is the point.
        ARCHIVE_APT+=(-o "Acquire::Check-Valid-Until=false")
    fi
    apt-get "${ARCHIVE_APT[@]}" -q update
}
