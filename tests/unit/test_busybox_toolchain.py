"""busybox's toolchain.tsv: the builder's tools apart from the target sysroot, whose architecture is checked."""

from __future__ import annotations

import pytest

from bootkiln.errors import InternalError
from bootkiln.stages.busybox import read_toolchain

CROSS = ("binutils-aarch64-linux-gnu\t2.40-2\ngcc-12-aarch64-linux-gnu\t12.2.0-14cross1\nmake\t4.3-4.1\n"
         "libc6-dev:arm64\t2.36-9+deb12u14\nlibgcc-12-dev:arm64\t12.2.0-14+deb12u1\nlinux-libc-dev:arm64\t6.1.176-1\n")


def test_tools_and_sysroot_are_split() -> None:
    tools, sysroot = read_toolchain(CROSS, "arm64")
    assert tools == {"binutils-aarch64-linux-gnu": "2.40-2", "gcc-12-aarch64-linux-gnu": "12.2.0-14cross1",
                     "make": "4.3-4.1"}
    assert sysroot == {"libc6-dev:arm64": "2.36-9+deb12u14", "libgcc-12-dev:arm64": "12.2.0-14+deb12u1",
                       "linux-libc-dev:arm64": "6.1.176-1"}


def test_architecture_independent_sysroot_packages_are_accepted() -> None:
    assert read_toolchain("musl-dev:amd64\t1.2.3-1\nfoo-headers:all\t1\n", "amd64")[1] == {
        "musl-dev:amd64": "1.2.3-1", "foo-headers:all": "1"}


def test_a_sysroot_package_of_another_architecture_is_refused() -> None:
    with pytest.raises(InternalError, match=r"libc6-dev for amd64, not for the target \(arm64\)"):
        read_toolchain("make\t4.3-4.1\nlibc6-dev:amd64\t2.36-9+deb12u14\n", "arm64")


@pytest.mark.parametrize("line", ["make 4.3-4.1", "make\t", "\t4.3"])
def test_a_malformed_line_is_refused(line: str) -> None:
    with pytest.raises(InternalError, match="line 2"):
        read_toolchain(f"gcc-12\t12.2.0-14+deb12u1\n{line}\n", "amd64")
