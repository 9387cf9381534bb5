#!/bin/sh
# The reader of bootkiln user-data version 1 (docs/userdata.md), for a busybox-only initramfs: the
# installer stage runs it, and tests/unit/test_userdata_reader.py runs it under busybox alone.
# It needs sh, gzip, head, od, tr, wc, awk, mkdir and rm, nothing else.
#
# usage: userdata-read.sh USERDATA OUTDIR
#   USERDATA  the bytes IMDS returned for /latest/user-data (gzip, as bootkiln writes it, or plain text)
#   OUTDIR    made if missing; on success it holds:
#     userdata.env  assignments for `.`: BK_VERSION BK_HOSTNAME BK_DISK_DEVICE BK_DISK_WIPE BK_VG BK_VG_PV
#                   BK_PUPPET_SERVER BK_PUPPET_ENVIRONMENT BK_PUPPET_CERTNAME (every value is checked
#                   against a character class, so sourcing it runs nothing)
#     layout        one line per partition, then per logical volume: "part|lv NAME SIZE FS MOUNT"
#                   (SIZE: MiB or "rest"; MOUNT: a path or "-")
#     ca.pem crl.pem cert.pem key.pem   (mode 0600, like everything here)
# On any error: one line on stderr, exit status 1, and none of those files are left.
set -eu

if [ $# -ne 2 ]; then
    echo "usage: $0 USERDATA OUTDIR" >&2
    exit 2
fi
src=$1
out=$2
umask 077
mkdir -p "$out"
clean() { rm -f "$out/userdata.env" "$out/layout" "$out/userdata.txt" "$out/ca.pem" "$out/crl.pem" \
    "$out/cert.pem" "$out/key.pem"; }
clean

# At most 1 MiB of text: a few KB is a real document, more is a mistake (or a gzip bomb).
limit=1048576
if [ "$(head -c 2 "$src" | od -An -tx1 | tr -d ' \n')" = 1f8b ]; then
    # Test first: in the pipe below only head's status counts. (Deflate inflates at most ~1000:1, so
    # even EC2's whole 16 KB cannot make this test expensive.)
    if ! gzip -t <"$src" 2>/dev/null; then
        clean
        echo "user-data: not a complete gzip stream" >&2
        exit 1
    fi
    gzip -dc <"$src" | head -c $((limit + 1)) >"$out/userdata.txt"
else
    head -c $((limit + 1)) "$src" >"$out/userdata.txt"
fi
size=$(wc -c <"$out/userdata.txt")
if [ "$size" -gt $limit ]; then
    clean
    echo "user-data: more than $limit bytes of text" >&2
    exit 1
fi
# awk reads a line up to a NUL and drops the rest: refuse NULs rather than read less than was sent.
if [ "$(tr -d '\000' <"$out/userdata.txt" | wc -c)" -ne "$size" ]; then
    clean
    echo "user-data: holds a NUL byte" >&2
    exit 1
fi
# Every line ends with a newline: a last line without one was cut short (as the Python reader says).
if [ "$size" -gt 0 ] && [ "$(od -An -tx1 -j $((size - 1)) "$out/userdata.txt" | tr -d ' \n')" != 0a ]; then
    clean
    echo "user-data: does not end with a newline (truncated?)" >&2
    exit 1
fi

if ! message=$(awk -v out="$out" '
function fail(why) { print "user-data line " NR ": " why; bad = 1; exit 1 }
# DNS names as the Python reader takes them: labels of 1-63, no leading or trailing hyphen.
function host_ok(s,    l, n, i) {
    if (length(s) > 253 || s !~ /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/) return 0
    n = split(s, l, ".")
    for (i = 1; i <= n; i++) if (length(l[i]) > 63) return 0
    return 1
}
function name_ok(s) { return s ~ /^[a-z][a-z0-9_-]*$/ && length(s) <= 31 }
function size_ok(s) { return s == "rest" || s ~ /^[1-9][0-9]*$/ }
function mount_ok(s) { return s == "-" || s ~ /^\/([A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*)?$/ && !dotted(s) }
# "$TT$mount" must stay inside the target, and /boot/. must not dodge the /boot check.
function dotted(s) { return ("/" s "/") ~ /\/\.\.?\// }
function record(kind, value,    f, n) {
    n = split(value, f, " ")
    # One space between fields of plain characters, as bootkiln writes them: split() alone would take
    # any run of blanks, CR included, and keep the CR in the layout line.
    if (value !~ /^[A-Za-z0-9._\/-]+ [A-Za-z0-9._\/-]+ [A-Za-z0-9._\/-]+ [A-Za-z0-9._\/-]+$/) fail("bad " kind " record")
    if (n != 4 || !name_ok(f[1]) || !size_ok(f[2]) || !mount_ok(f[4])) fail("bad " kind " record")
    if (kind == "part" && f[3] !~ /^(ext4|xfs|vfat|swap|lvm)$/) fail("bad filesystem " f[3])
    if (kind == "lv" && f[3] !~ /^(ext4|xfs|swap)$/) fail("bad filesystem " f[3])
    if ((f[3] ~ /^(swap|lvm)$/) != (f[4] == "-")) fail(f[1] ": only ext4, xfs and vfat are mounted")
    if (rest[kind]) fail(kind " " rest[kind] " takes the rest of the space but is not last")
    if (f[2] == "rest") rest[kind] = f[1]
    if (f[4] == "/boot" || f[4] == "/boot/efi") fail(f[4] " is the installer'"'"'s own partition; mount nothing there")
    if (f[4] != "-") { if (f[4] in mounted) fail("mountpoint " f[4] " used twice"); mounted[f[4]] = 1 }
    if (f[3] == "lvm") { pv = pv " " f[1] }
    if ((kind SUBSEP f[1]) in named) fail(kind " name " f[1] " used twice")
    named[kind, f[1]] = 1
    if (++count[kind] > 100 && kind == "part") fail("more than 100 partitions")
    layout[++rows] = kind " " value
}
NR == 1 { if ($0 != "#bootkiln-userdata") fail("not a bootkiln user-data document"); next }
section != "" {
    if ($0 == "end=" section) {
        if (!(section in label)) fail("section " section " holds no PEM block")
        if (block != "") fail("section " section " has a PEM block without its END line")
        section = ""
        next
    }
    # Whole blocks only, BEGIN and END alike, and one block for cert and key: as the Python reader.
    if ($0 ~ /^-----BEGIN [A-Z0-9 ]+-----$/) {
        if ($0 !~ want[section]) fail("section " section " holds " $0)
        if (block != "") fail("section " section " is not plain PEM")
        if ((section in label) && section ~ /^(cert|key)$/) fail("section " section " holds more than one PEM block")
        block = substr($0, 12, length($0) - 16)
        label[section] = 1
    } else if ($0 ~ /^-----END [A-Z0-9 ]+-----$/) {
        if ($0 != "-----END " block "-----") fail("section " section " is not plain PEM")
        block = ""
    # A string, not /.../: inside a bracket busybox awk keeps the backslash of "\/", so the class would
    # take backslashes too.
    } else if (block == "" || $0 !~ "^[A-Za-z0-9+/=]+$") {
        fail("section " section " is not plain PEM")
    }
    print > (out "/" section ".pem")
    next
}
{
    eq = index($0, "=")
    if (eq < 2) fail("not key=value")
    key = substr($0, 1, eq - 1)
    value = substr($0, eq + 1)
    once = key == "begin" ? key "=" value : key
    if (key != "part" && key != "lv") { if (once in seen) fail(once " given twice"); seen[once] = 1 }
}
key == "begin" {
    if (value !~ /^(ca|crl|cert|key)$/) fail("unknown section " value)
    section = value
    next
}
key == "version" { if (value != "1") fail("version " value " is not supported (this reader knows 1)"); env["VERSION"] = value; next }
key == "hostname" { if (!host_ok(value)) fail("bad hostname"); env["HOSTNAME"] = value; next }
key == "disk.device" { if (value !~ /^\/dev\/[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/) fail("bad disk.device"); env["DISK_DEVICE"] = value; next }
key == "disk.wipe" { if (value !~ /^(true|false)$/) fail("disk.wipe is true or false"); env["DISK_WIPE"] = value; next }
key == "puppet.server" { if (!host_ok(value)) fail("bad puppet.server"); env["PUPPET_SERVER"] = value; next }
key == "puppet.environment" { if (value !~ /^[a-z0-9_]+$/ || length(value) > 64) fail("bad puppet.environment"); env["PUPPET_ENVIRONMENT"] = value; next }
key == "puppet.certname" { if (value !~ /^[a-z0-9][a-z0-9._-]*$/ || length(value) > 253) fail("bad puppet.certname"); env["PUPPET_CERTNAME"] = value; next }
key == "part" { if (count["lv"]) fail("part after lv"); record("part", value); next }
key == "vg" {
    if (value !~ /^[a-z0-9_-]+ [a-z0-9_-]+$/ || split(value, f, " ") != 2 || !name_ok(f[1]) || !name_ok(f[2])) fail("bad vg record")
    env["VG"] = f[1]; env["VG_PV"] = f[2]
    next
}
key == "lv" { if (!("VG" in env)) fail("lv before vg"); record("lv", value); next }
{ fail("unknown key " key) }
BEGIN {
    want["ca"] = "^-----BEGIN CERTIFICATE-----$"; want["cert"] = want["ca"]
    want["crl"] = "^-----BEGIN X509 CRL-----$"
    want["key"] = "^-----BEGIN (RSA |EC )?PRIVATE KEY-----$"
}
END {
    if (bad) exit 1
    if (NR == 0) { print "user-data: empty"; exit 1 }
    if (section != "") { print "user-data: section " section " has no end=" section " line"; exit 1 }
    split("VERSION HOSTNAME DISK_DEVICE DISK_WIPE PUPPET_SERVER PUPPET_ENVIRONMENT PUPPET_CERTNAME", need, " ")
    for (i = 1; i <= 7; i++) if (!(need[i] in env)) { print "user-data: no " need[i]; exit 1 }
    split("ca crl cert key", parts, " ")
    for (i = 1; i <= 4; i++) if (!(parts[i] in label)) { print "user-data: no " parts[i] " section"; exit 1 }
    if (!count["part"]) { print "user-data: no partitions"; exit 1 }
    if (("VG" in env) && !count["lv"]) { print "user-data: the vg has no logical volumes"; exit 1 }
    if (!("/" in mounted)) { print "user-data: nothing is mounted at /"; exit 1 }
    if (("VG" in env) != (pv != "") || (("VG" in env) && pv != " " env["VG_PV"])) {
        print "user-data: the vg must name the one lvm partition"; exit 1
    }
    if (!("VG" in env)) { env["VG"] = ""; env["VG_PV"] = "" }
    split("VERSION HOSTNAME DISK_DEVICE DISK_WIPE VG VG_PV PUPPET_SERVER PUPPET_ENVIRONMENT PUPPET_CERTNAME", keys, " ")
    for (i = 1; i <= 9; i++) print "BK_" keys[i] "='\''" env[keys[i]] "'\''" > (out "/userdata.env")
    for (i = 1; i <= rows; i++) print layout[i] > (out "/layout")
}
' "$out/userdata.txt"); then
    clean
    echo "${message:-user-data: invalid}" >&2
    exit 1
fi
rm -f "$out/userdata.txt"
