"""busybox stage: Debian's busybox source, compiled statically with the configuration in the repo.

Script: scripts/busybox.sh. Config: configs/busybox.config (or the profile's busybox.config).
The source comes from the profile's archive with `apt-get source`, which checks every file of the
source package against the signed Sources index before dpkg-source unpacks and patches it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bootkiln.core.archguard import require_elf_file
from bootkiln.errors import InputError, InternalError
from bootkiln.profile.loader import busybox_config
from bootkiln.profile.schema import Profile
from bootkiln.stages.base import (
    Inputs,
    StageBase,
    StageContext,
    add_scripts,
    archive_env,
    base_fingerprint,
    fetch_then_make,
    scripts_upload,
)

SCRIPT = "busybox.sh"

# Applets whose Kconfig symbol is not simply their upper-cased name.
APPLET_SYMBOLS: dict[str, tuple[str, ...]] = {
    "sh": ("SH_IS_ASH", "SH_IS_HUSH", "ASH", "HUSH"),
    "ash": ("ASH",),
    "[": ("TEST", "TEST1"),
    "[[": ("TEST", "TEST2"),
    "mkfs.ext2": ("MKE2FS",),
    "mkfs.vfat": ("MKDOSFS",),
    "mkdosfs": ("MKDOSFS",),
    "mke2fs": ("MKE2FS",),
    "mkfs.minix": ("MKFS_MINIX",),
    "fsck.minix": ("FSCK_MINIX",),
    "egrep": ("EGREP", "GREP"),
    "fgrep": ("FGREP", "GREP"),
    "zcat": ("ZCAT", "GUNZIP"),
    "xzcat": ("XZCAT", "UNXZ"),
    "udhcpc": ("UDHCPC",),
    "lzcat": ("LZCAT", "UNLZMA"),
}


def enabled_symbols(config_text: str) -> set[str]:
    return set(re.findall(r"^CONFIG_([A-Z0-9_]+)=y$", config_text, re.MULTILINE))


def applet_symbols(applet: str) -> tuple[str, ...]:
    return APPLET_SYMBOLS.get(applet, (re.sub(r"[^A-Z0-9]", "_", applet.upper()),))


def missing_applets(config_text: str, applets: list[str]) -> list[str]:
    """Applets the configuration does not enable (checked before anything is compiled)."""
    enabled = enabled_symbols(config_text)
    return [applet for applet in applets if not any(symbol in enabled for symbol in applet_symbols(applet))]


# Compiler flags that pin one architecture's code generation (x86's -m32/-m64/-march, arm's -mcpu...).
ARCH_FLAGS = re.compile(r"(?:^|\s)(-m(?:32|64|x32|arch=\S+|cpu=\S+|tune=\S+|abi=\S+|fpu=\S+|sse\S*|avx\S*))")


def check_toolchain_settings(text: str, where: str, target: str) -> None:
    """bootkiln picks the compiler for the target; a configuration that picks one cannot build for every target."""
    settings = dict(re.findall(r'^CONFIG_(CROSS_COMPILER_PREFIX|EXTRA_CFLAGS|EXTRA_LDFLAGS)="(.*)"$', text,
                               re.MULTILINE))
    if settings.get("CROSS_COMPILER_PREFIX"):
        raise InputError(f"{where}: CONFIG_CROSS_COMPILER_PREFIX is {settings['CROSS_COMPILER_PREFIX']!r}: bootkiln "
                         f"chooses the compiler for the target ({target}) itself",
                         hint='set CONFIG_CROSS_COMPILER_PREFIX="" in the busybox configuration')
    for name in ("EXTRA_CFLAGS", "EXTRA_LDFLAGS"):
        pinned = ARCH_FLAGS.findall(settings.get(name, ""))
        if pinned:
            raise InputError(f"{where}: CONFIG_{name} has {', '.join(pinned)}, which pins a CPU architecture and "
                             f"cannot build busybox for {target}",
                             hint=f"drop {', '.join(pinned)} from CONFIG_{name}")


def check_config(profile: Profile) -> None:
    path = busybox_config(profile)
    text = path.read_text()
    if "CONFIG_STATIC=y" not in text.splitlines():
        raise InputError(f"{path}: CONFIG_STATIC is not set: the initramfs needs a static busybox",
                         hint="set CONFIG_STATIC=y in the busybox configuration")
    check_toolchain_settings(text, str(path), profile.debian.architecture)
    missing = missing_applets(text, profile.busybox.applets)
    if missing:
        raise InputError(
            f"{path}: the busybox configuration lacks applet(s) the profile needs: {', '.join(missing)}",
            hint="enable them in the configuration (CONFIG_<NAME>=y) or drop them from busybox.applets",
        )


def read_toolchain(text: str, target: str) -> tuple[dict[str, str], dict[str, str]]:
    """toolchain.tsv split into the builder's packages that ran and the target sysroot's ("name:arch").

    The sysroot decides busybox's libc, start files and libgcc, so a package of another architecture
    there would be a broken binary: refused, naming it.
    """
    tools: dict[str, str] = {}
    sysroot: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        name, tab, version = line.partition("\t")
        if not tab or not name or not version:
            raise InternalError(f"busybox toolchain.tsv line {number}: {line!r} is not 'package<TAB>version'")
        package, colon, arch = name.partition(":")
        if not colon:
            tools[name] = version
        elif arch in (target, "all"):
            sysroot[name] = version
        else:
            raise InternalError(f"busybox was compiled against {package} for {arch}, not for the target ({target})")
    return tools, sysroot


class BusyboxStage(StageBase):
    name = "busybox"
    requires: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ("busybox", "applets.txt")

    def check(self, profile: Profile) -> None:
        check_config(profile)

    def key(self, ctx: StageContext, inputs: Inputs) -> str:
        fingerprint = (
            base_fingerprint(self, inputs)
            .add_file("config", busybox_config(ctx.profile))
            .add_json("archive", ctx.archive.identity())
            .add_text("builder", ctx.builder.image_id)
            .add_text("arch", ctx.profile.debian.architecture)
        )
        return add_scripts(fingerprint, SCRIPT).hexdigest()

    def build(self, ctx: StageContext, inputs: Inputs, scratch: Path) -> dict[str, Any]:
        config = busybox_config(ctx.profile)
        # The applets are checked here after the build; the script never needed them in its environment.
        env = archive_env(ctx)
        uploads = [scripts_upload(ctx, SCRIPT, {"busybox.config": (config.read_bytes(), 0o644)})]
        fetch_then_make(ctx, self.name, SCRIPT, scratch, env=env, uploads=uploads, fetch=["fetch"],
                        fetch_hint="apt-get source busybox failed; check the mirror and that it serves deb-src",
                        make=["compile"],
                        make_hint="busybox did not compile with this configuration; the compiler output is above")
        require_elf_file(scratch / "busybox", ctx.profile.debian.architecture, "the compiled busybox")
        applets = (scratch / "applets.txt").read_text().split()
        names = {path.rsplit("/", 1)[-1] for path in applets}
        absent = [applet for applet in ctx.profile.busybox.applets if applet not in names]
        if absent:
            raise InputError(f"the compiled busybox lacks applet(s) the profile needs: {', '.join(absent)}",
                             hint="enable them in the busybox configuration")
        toolchain, sysroot = read_toolchain((scratch / "toolchain.tsv").read_text(), ctx.profile.debian.architecture)
        sources = {name: digest for digest, name in
                   (line.split(maxsplit=1) for line in (scratch / "source.sha256").read_text().splitlines())}
        return {"applets": len(applets), "source_version": (scratch / "version.txt").read_text().strip(),
                "source_sha256": sources, "toolchain": toolchain, "sysroot": sysroot}
