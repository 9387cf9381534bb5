"""Finding, reading and validating a profile file, and resolving the files it names.

Every error names the file and the dotted key; nothing here starts a container or touches the network.
"""

from __future__ import annotations

import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

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
    data = _read_toml(path)
    data.setdefault("name", path.stem)
    try:
        profile = Profile.model_validate({**data, "source": path})
    except ValidationError as exc:
        raise InputError(f"{path}: invalid profile\n" + describe_validation_errors(exc),
                         hint="profiles/README.md lists every key; `invoke check-profile` shows the defaults") from None
    check_references(profile)
    return profile


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read profile: {exc.strerror or exc}") from None
    not_text = InputError(f"{path}: not a text file, so not a profile",
                          hint="a profile is a TOML text file in UTF-8 (see profiles/*.toml); check that you "
                               "passed the profile and not an image, an archive or another binary file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise not_text from None
    # TOML allows no control characters but tab and line ends: a file with them is not text at all.
    if CONTROL_CHARACTERS.search(text):
        raise not_text
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML: {exc}", hint="fix the syntax at the line shown") from None


CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
BYTE_SIZE_HELP = "a size is a whole number of bytes (0 or more), or a string like '512MiB' or '2GiB'"


def describe_validation_errors(exc: ValidationError) -> str:
    lines = []
    for loc, error in _merge_union_branches(exc.errors()):
        key = ".".join(loc) or "(top level)"
        given = error.get("input")
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(allowed_keys(loc[:-1]))
            lines.append(f"  key '{key}': unknown key (allowed here: {allowed})")
        elif error["type"] in ("byte_size", "byte_size_unit"):
            lines.append(f"  key '{key}': {BYTE_SIZE_HELP} (got {given!r})")
        else:
            # Our own validators already quote the value in their message.
            quoted = error["type"] == "value_error" or isinstance(given, dict)
            message = str(error["msg"]).removeprefix("Value error, ")  # pydantic's prefix for our own messages
            lines.append(f"  key '{key}': {message}{'' if quoted else f' (got {given!r})'}")
    return "\n".join(lines)


def _merge_union_branches(errors: list[Any]) -> list[tuple[list[str], Any]]:
    """Pydantic reports a value that fits no branch of a union once per branch, under internal names
    such as `certs.literal['generate']` and `certs.CertFiles`. Say instead what the key allows: a table's
    own problems when a table was given, else one line listing the alternatives."""
    merged: list[tuple[list[str], Any]] = []
    branches: dict[tuple[str, ...], list[tuple[str, list[str], Any]]] = {}
    for error in errors:
        loc = [str(part) for part in error["loc"]]
        tag = next((i for i, part in enumerate(loc) if _is_branch_name(part)), None)
        if tag is None:
            merged.append((loc, error))
            continue
        group = branches.setdefault(tuple(loc[:tag]), [])
        if not group:
            merged.append((loc[:tag], None))  # placeholder: keeps the order of the errors
        group.append((loc[tag], loc[tag + 1:], error))
    result: list[tuple[list[str], Any]] = []
    for loc, error in merged:
        if error is not None:
            result.append((loc, error))
            continue
        group = branches[tuple(loc)]
        given = group[0][2].get("input")
        tables = [(rest, err) for name, rest, err in group if name in _model_names()]
        if isinstance(given, dict) and tables:
            result.extend((loc + rest, err) for rest, err in tables)
            continue
        alternatives = []
        for name, _, err in group:
            text = _describe_branch(name, err)
            if text not in alternatives:
                alternatives.append(text)
        result.append((loc, {"type": "value_error", "input": given,
                             "msg": f"expected {', or '.join(alternatives)} (got {given!r})"}))
    return result


def _describe_branch(name: str, error: Any) -> str:
    model = _model_names().get(name)
    if model is not None:
        return f"a table with the keys {', '.join(sorted(f for f in model.model_fields if f != 'source'))}"
    return str(error["msg"]).removeprefix("Input should be ")


def _is_branch_name(part: str) -> bool:
    return part.startswith(("literal[", "constrained-", "function-")) or part in _model_names()


@cache
def _model_names() -> dict[str, type[BaseModel]]:
    """Every model reachable from the profile's schema, by class name (pydantic's names for union branches)."""
    found: dict[str, type[BaseModel]] = {}

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation.__name__ not in found:
            found[annotation.__name__] = annotation
            for field in annotation.model_fields.values():
                visit(field.annotation)
        for argument in get_args(annotation):
            visit(argument)

    visit(Profile)
    return found


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
    """Files a profile names must exist, and lie where a profile may reach, before any container starts."""
    for name in profile.rootfs.overlays:
        overlay_dir(profile, name, "rootfs.overlays")
    for name in profile.initramfs.overlays:
        overlay_dir(profile, name, "initramfs.overlays")
    if profile.nfsroot.nfsroot is not None or "overlays" in profile.nfsroot.model_fields_set:
        for name in profile.nfsroot.overlays:
            overlay_dir(profile, name, "nfsroot.overlays")
    busybox_config(profile)
    kernel_deb(profile)
    check_paths(profile)
    secureboot_files(profile)



def _inside(path: Path, folder: Path) -> bool:
    """True when `path` (resolved) lies strictly below `folder` (resolved)."""
    return path != folder and path.is_relative_to(folder)


def _contained(profile: Profile, key: str, name: str, roots: list[Path],
               kind: Literal["dir", "file", "any"]) -> Path | None:
    """The first of `roots / name` that exists as a `kind`, resolved, and refused unless it stays inside a root.

    A profile must never pull host files into an image: an absolute name, a `..` that climbs out, or a
    symlink that points elsewhere would all do that, so the resolved path must lie below one of the
    roots the profile may use (its own folder, or the project's folder for that kind of file).
    """
    if Path(name).is_absolute():
        raise _outside(profile, key, name, None, roots)
    allowed = [root.resolve() for root in roots]
    for root in roots:
        candidate = root / name
        exists = {"dir": candidate.is_dir, "file": candidate.is_file, "any": candidate.exists}[kind]
        if not exists():
            continue
        resolved = candidate.resolve()
        if not any(_inside(resolved, folder) for folder in allowed):
            raise _outside(profile, key, name, resolved, roots)
        return resolved
    return None


def _outside(profile: Profile, key: str, name: str, resolved: Path | None, roots: list[Path]) -> InputError:
    where = "is an absolute path" if resolved is None else f"resolves to {resolved}"
    folders = " or ".join(str(root) for root in roots)
    return InputError(f"{profile.where}: key '{key}': {name!r} {where}, outside the folders a profile may use "
                      f"({folders})",
                      hint="give a path relative to the profile's folder; copy the files there rather than "
                           "linking to them: a profile never pulls host files into an image")


def overlay_dir(profile: Profile, name: str, key: str = "rootfs.overlays") -> Path:
    """An overlay is a folder inside the profile's folder, or under the project's overlays/.

    Symlinks *inside* an overlay stay links in the image; the overlay folder itself must resolve inside.
    """
    found = _contained(profile, key, name, [profile.base_dir, project_root() / "overlays"], "dir")
    if found is not None:
        return found
    raise InputError(f"{profile.where}: key '{key}': overlay {name!r} not found",
                     hint=f"create overlays/{name}/ or fix the name")


def _profile_file(profile: Profile, relative: str, fallback_dir: str, key: str) -> Path:
    found = _contained(profile, key, relative, [profile.base_dir, project_root() / fallback_dir], "file")
    if found is not None:
        return found
    raise InputError(f"{profile.where}: key {key!r}: file {relative!r} not found",
                     hint=f"give a path relative to the profile, or a file in {fallback_dir}/")


def busybox_config(profile: Profile) -> Path:
    return _profile_file(profile, profile.busybox.config, "configs", "busybox.config")


def kernel_deb(profile: Profile) -> Path | None:
    deb = profile.kernel.deb
    return _profile_file(profile, deb, "debs", "kernel.deb") if deb else None


def check_paths(profile: Profile) -> list[Path]:
    """The profile's own testinfra check files or folders: inside the profile's folder only."""
    found: list[Path] = []
    for rel in profile.checks.paths:
        path = _contained(profile, "checks.paths", rel, [profile.base_dir], "any")
        if path is None:
            raise InputError(f"{profile.where}: key 'checks.paths': {rel!r} does not exist "
                             f"(relative to {profile.base_dir})")
        found.append(path)
    return found


def secureboot_files(profile: Profile) -> tuple[Path, Path] | None:
    """The Secure Boot key and certificate: files inside the profile's folder only (no project fallback)."""
    settings = profile.secureboot
    if settings.key is None or settings.cert is None:
        return None
    found = []
    for key, name in (("secureboot.key", settings.key), ("secureboot.cert", settings.cert)):
        path = _contained(profile, key, name, [profile.base_dir], "file")
        if path is None:
            raise InputError(f"{profile.where}: key {key!r}: file {name!r} not found (relative to {profile.base_dir})",
                             hint="make a test pair with `invoke secureboot-key --output DIR`, or fix the path")
        found.append(path)
    return found[0], found[1]
