"""Finding, reading and validating a profile file, and resolving the files it names.

Every error names the file and the dotted key; nothing here starts a container or touches the network.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import get_args, get_origin

from pydantic import BaseModel, ValidationError

from bootkiln.errors import InputError
from bootkiln.paths import project_root
from bootkiln.profile.schema import DEFAULT_PROFILE, Profile


def profiles_dir() -> Path:
    return project_root() / "profiles"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in profiles_dir().glob("*.toml"))


def find_profile(ref: str | None) -> Path | None:
    """Map `--profile NAME|PATH` to a file; None means the built-in default."""
    if ref is None or (ref == DEFAULT_PROFILE and not (profiles_dir() / "default.toml").exists()):
        return None
    candidate = Path(ref).expanduser()
    if candidate.suffix == ".toml" or "/" in ref:
        if not candidate.is_file():
            # A FIFO would block the read forever; a folder is a slip of the tab key.
            what = ("is a folder, not a file" if candidate.is_dir() else
                    "is not a regular file (a FIFO, socket or device)" if candidate.exists() else "does not exist")
            raise InputError(f"profile file {candidate} {what}",
                             hint="pass an existing .toml file, or a profile name from profiles/")
        return candidate.resolve()
    named = profiles_dir() / f"{ref}.toml"
    if not named.is_file():
        names = ", ".join(available_profiles()) or "(none)"
        raise InputError(f"no profile named {ref!r}",
                         hint=f"available profiles: {names}, or pass a path to a .toml file")
    return named


def load_profile(ref: str | None = None) -> Profile:
    path = find_profile(ref)
    if path is None:
        return Profile()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML: {exc}", hint="fix the syntax at the line shown") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read profile: {exc}") from None
    data.setdefault("name", path.stem)
    try:
        profile = Profile.model_validate({**data, "source": path})
    except ValidationError as exc:
        raise InputError(f"{path}: invalid profile\n" + describe_validation_errors(exc),
                         hint="profiles/README.md lists every key; `invoke check-profile` shows the defaults") from None
    check_references(profile)
    return profile


def describe_validation_errors(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        key = ".".join(loc) or "(top level)"
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(allowed_keys(loc[:-1]))
            lines.append(f"  key '{key}': unknown key (allowed here: {allowed})")
        else:
            given = error.get("input")
            # Our own validators already quote the value in their message.
            quoted = error["type"] == "value_error" or isinstance(given, dict)
            lines.append(f"  key '{key}': {error['msg']}{'' if quoted else f' (got {given!r})'}")
    return "\n".join(lines)


def allowed_keys(parent: list[str]) -> list[str]:
    """The field names valid at a dotted location of the profile, for error messages."""
    model: type[BaseModel] = Profile
    parts = iter(parent)
    for part in parts:
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        if get_origin(annotation) is dict:
            # attrs-like tables: the next location part is a user's key, then the value model's fields.
            annotation = get_args(annotation)[1]
            next(parts, None)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return []
    return sorted(name for name in model.model_fields if name != "source")


def check_references(profile: Profile) -> None:
    """Files a profile names must exist before any container starts."""
    for name in profile.rootfs.overlays:
        overlay_dir(profile, name, "rootfs.overlays")
    for name in profile.initramfs.overlays:
        overlay_dir(profile, name, "initramfs.overlays")
    busybox_config(profile)
    kernel_deb(profile)
    for rel in profile.checks.paths:
        if not (profile.base_dir / rel).exists():
            raise InputError(f"{profile.source}: key 'checks.paths': {rel!r} does not exist "
                             f"(relative to {profile.base_dir})")


def overlay_dir(profile: Profile, name: str, key: str = "rootfs.overlays") -> Path:
    """An overlay is a folder under overlays/, or a path relative to the profile file."""
    local = profile.base_dir / name
    for candidate in (local, project_root() / "overlays" / name):
        if candidate.is_dir():
            return candidate.resolve()
    where = profile.source or "built-in default profile"
    raise InputError(f"{where}: key '{key}': overlay {name!r} not found",
                     hint=f"create overlays/{name}/ or fix the name")


def _profile_file(profile: Profile, relative: str, fallback_dir: str, key: str) -> Path:
    for candidate in (profile.base_dir / relative, project_root() / fallback_dir / relative):
        if candidate.is_file():
            return candidate.resolve()
    where = profile.source or "built-in default profile"
    raise InputError(f"{where}: key {key!r}: file {relative!r} not found",
                     hint=f"give a path relative to the profile, or a file in {fallback_dir}/")


def busybox_config(profile: Profile) -> Path:
    return _profile_file(profile, profile.busybox.config, "configs", "busybox.config")


def kernel_deb(profile: Profile) -> Path | None:
    deb = profile.kernel.deb
    return _profile_file(profile, deb, "debs", "kernel.deb") if deb else None
