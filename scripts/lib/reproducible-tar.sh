# Sourced by stage scripts: a tarball whose bytes depend only on the tree's content.
#   reproducible_tar ARCHIVE FOLDER
# Sorted names, numeric owners, no atime/ctime, mtimes clamped to SOURCE_DATE_EPOCH, and file
# capabilities kept (ping needs its cap_net_raw).
reproducible_tar() {
    tar --create --file "$1" --directory "$2" \
        --sort=name --numeric-owner --format=pax \
        --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
        --mtime="@${SOURCE_DATE_EPOCH:?}" --clamp-mtime \
        --xattrs --xattrs-include='security.capability' \
        .
}
