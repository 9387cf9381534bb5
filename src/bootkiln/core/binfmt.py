"""Running the target's binaries in the builder: natively, or through qemu-user and binfmt_misc.

Only maintainer scripts of a foreign root filesystem need this (busybox is cross-compiled, kernels
and boot loaders are unpacked). Where the engine's kernel has no handler for the target, bootkiln
registers qemu-user-static (F flag) from a privileged builder container; what others registered is
used as it is and never removed. A rootless engine cannot register anything: that is said before
any work starts.

Since Linux 6.7 a binfmt_misc entry lives only as long as some mount of binfmt_misc does; on a host
that keeps none mounted (no systemd), a registration made in one container is gone when it exits.
So ensure_binfmt() is the early check (it mounts, and finds or registers the handler), and the
rootfs bootstrap container runs the same script again for itself before mmdebstrap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bootkiln.core.engine import Engine, HoldFailed, Upload
from bootkiln.core.runner import Builder, Runner
from bootkiln.errors import CommandFailed, EnvironmentProblem

SCRIPT = "binfmt.sh"
REFUSED_STATUS = 3
HINT = ("register qemu-user for the target on the engine's host (`apt-get install qemu-user-static` on Debian, "
        "`docker run --privileged --rm tonistiigi/binfmt --install arm64` elsewhere), use a rootful engine, or "
        "build on an engine whose host is of the target's architecture")


def native(target: str, builder: str) -> bool:
    return target == builder


def require_registrable(engine: Engine, target: str) -> None:
    """Refuse, before any work, an engine that cannot run foreign binaries nor be taught to."""
    if engine.rootless():
        raise EnvironmentProblem(f"the Docker engine at {engine.endpoint.url} is rootless, so bootkiln cannot "
                                 f"register qemu-user in binfmt_misc to run {target} maintainer scripts, and "
                                 "it cannot tell whether the host has done so", hint=HINT)


def ensure_binfmt(runner: Runner, engine: Engine, *, image: str, target: str, builder: str,
                  uploads: Sequence[Upload]) -> str:
    """How the target's binaries run in the builder: 'native', or the binfmt_misc handler that runs them."""
    if native(target, builder):
        return "native"
    require_registrable(engine, target)
    try:
        lines = runner.run(["/bootkiln/" + SCRIPT, target], stage="binfmt",
                           where=Builder(image=image, network="none", uploads=uploads))
    except CommandFailed as failure:
        if failure.status != REFUSED_STATUS:
            raise
        raise _cannot_register(target, failure.tail) from None
    return described(next((line for line in reversed(lines) if line.startswith("binfmt: ")), "binfmt: unknown"))


def described(report: str) -> str:
    """What binfmt.sh found, as the manifest records it."""
    found = report.removeprefix("binfmt: ")
    return found if found.startswith("native") else f"qemu-user via binfmt_misc ({found})"


def hold_binfmt(engine: Engine, *, image: str, target: str, uploads: Sequence[Upload],
                on_line: Callable[[str], None]) -> str:
    """Keep the handler for `target` registered while this build runs: a container of the native
    builder `image` holds the binfmt_misc mount (the lease removes it at exit). What an emulated
    builder needs, since every one of its containers starts through the handler."""
    require_registrable(engine, target)
    try:
        name, report = engine.hold(image, ["/bootkiln/" + SCRIPT, target, "hold"], ready="binfmt: ",
                                   uploads=uploads, on_line=on_line)
    except HoldFailed as failure:
        if failure.status != REFUSED_STATUS:
            raise CommandFailed(stage="binfmt", where=f"in builder container {image}",
                                argv=["/bootkiln/" + SCRIPT, target, "hold"], status=failure.status,
                                tail=failure.tail, hint=HINT) from None
        raise _cannot_register(target, failure.tail) from None
    on_line(f"{report}; container {name} holds it until this build ends")
    return described(report)


def _cannot_register(target: str, tail: Sequence[str]) -> EnvironmentProblem:
    reason = next((line for line in reversed(tail) if line.startswith("binfmt.sh:")), "")
    return EnvironmentProblem(f"the engine's host cannot run {target} binaries and bootkiln could not register "
                              f"qemu-user for them: {reason.removeprefix('binfmt.sh: ')}", hint=HINT)
