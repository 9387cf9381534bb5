# Sourced by stage scripts. Points a private apt configuration at the PROFILE's archive state
# (mirror or snapshot, suite, components: /bootkiln/apt/*.list, written by bootkiln), not at the
# builder's own sources, and keeps its lists and downloads in the build volume.
#   archive_apt_update [with-sources]    then: apt-get "${ARCHIVE_APT[@]}" download|source ...
: "${BK_ARCH:?}"

# A download folder apt's unprivileged _apt user may write to (apt warns and runs unsandboxed otherwise).
apt_download_dir() {
    mkdir -p "$1"
    if id _apt > /dev/null 2>&1; then chown _apt:root "$1"; fi
}

archive_apt_update() {
    local dir=/work/apt sources=/bootkiln/apt/sources.list
    if [ "${1:-}" = with-sources ]; then sources=/bootkiln/apt/sources-src.list; fi
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
    ARCHIVE_APT=(
        -o "Dir::Etc::SourceList=$sources"
        -o "Dir::Etc::SourceParts=/nonexistent"
        -o "Dir::State::Lists=$dir/lists"
        -o "Dir::Cache=$dir/cache"
        -o "APT::Architecture=$BK_ARCH"
        -o "APT::Architectures::=$BK_ARCH"
        # snapshot.debian.org rate-limits: apt backs off between its retries.
        -o "Acquire::Retries=5"
        -o "Acquire::http::Timeout=30"
    )
    apt-get "${ARCHIVE_APT[@]}" -q update
}
