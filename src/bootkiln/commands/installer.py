"""What the installer's tasks do: write a host's user-data, and serve it as a fake metadata service."""

from __future__ import annotations

import shutil
from pathlib import Path

from bootkiln.atomicfile import write_atomic
from bootkiln.commands.guard import guarded
from bootkiln.console import Reporter
from bootkiln.errors import InputError
from bootkiln.installer.userdata import EncodedUserData, UserData
from bootkiln.paths import Workspace, check_user_file, pki_root
from bootkiln.profile.loader import load_profile
from bootkiln.profile.schema import Profile


def _out(profile: Profile) -> Path:
    return Workspace.default().output_dir(profile.name)


def make_userdata(profile: Profile, hostname: str | None, reporter: Reporter) -> tuple[UserData, EncodedUserData]:
    """The user-data document for one host, with its certificates, inside EC2's size limit."""
    from bootkiln.installer import pki
    from bootkiln.installer.userdata import check_budget, encode, host_names, render

    settings = profile.userdata
    names = host_names(settings, hostname, where=profile.where)
    if settings.certs == "generate":
        root = private_pki_dir(profile, reporter)
        certs = pki.generate(root, certname=names.certname, hostname=names.hostname, server=names.server,
                             key_type=settings.key_type)
        reporter.info(f"certificates for {names.certname} from the CA in {root} (made there if missing)")
    else:
        certs = pki.load(settings.certs, profile.base_dir, certname=names.certname, where=profile.where)
    document = render(settings, names=names, certs=certs)
    encoded = encode(document)
    check_budget(encoded)
    return document, encoded


def private_pki_dir(profile: Profile, reporter: Reporter) -> Path:
    """The profile's CA and keys, outside out/ (see paths.pki_root); an older out/<profile>/pki/ is moved there."""
    root = pki_root() / profile.name
    old = _out(profile) / "pki"
    if old.is_dir() and not old.is_symlink() and not root.exists():
        root.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.move(old, root)
        reporter.info(f"moved the CA and keys from {old} to {root}: private keys stay out of out/, whose files "
                      "get uploaded")
    elif old.exists():
        reporter.warn(f"{old} still holds private keys an older bootkiln wrote there, beside the artifacts; "
                      f"this run uses {root}: delete {old} (or move it to {root} if that is the CA you mean)")
    return root


def check_output(path: Path, hostname: str | None = None) -> None:
    """A folder is no place to write the document to: said before any key is made."""
    if path.is_dir():
        example = path / f"{hostname or 'HOSTNAME'}.gz"
        raise InputError(f"{path} is a folder, not a file to write the user-data to",
                         hint=f"pass a file path, e.g. --output {example}")


def write_private(path: Path, data: bytes) -> None:
    """0600 from the first byte: the document holds the host's private key. No temporary file survives."""
    check_output(path)
    try:
        write_atomic(path, data, mode=0o600, private_parent=True)
    except OSError as exc:
        raise InputError(f"cannot write the user-data to {path}: {exc.strerror or exc}",
                         hint="pass --output a file path in a folder you can write to") from None


def userdata_path(profile: Profile, hostname: str) -> Path:
    return _out(profile) / "userdata" / f"{hostname}.gz"


def userdata(profile_ref: str | None, hostname: str | None = None, output: str | None = None) -> int:
    """Write the installer's user-data for a host and print its size budget (never its contents)."""

    def action(reporter: Reporter) -> None:
        profile = load_profile(profile_ref)
        if output:
            check_output(Path(output), hostname or profile.userdata.hostname)
        document, encoded = make_userdata(profile, hostname, reporter)
        path = Path(output) if output else userdata_path(profile, document.hostname)
        write_private(path, encoded.blob)
        reporter.info("\n".join(encoded.report()))
        reporter.info(f"user-data for {document.hostname}: {path} ({encoded.size:,} bytes, mode 0600; it holds "
                      "the host's private key)")

    return guarded(action)


def fake_imds(userdata: str, port: int, tokens: str) -> int:
    def action(reporter: Reporter) -> None:
        import shlex
        from pathlib import Path

        from bootkiln.installer.fakeimds import (
            GUEST_ADDRESS,
            GUEST_DNS,
            GUEST_GATEWAY,
            FakeImds,
            qemu_netdev,
            token_mode,
        )

        path = Path(userdata).absolute()
        check_user_file(path, "user-data file",
                        hint="write one with `invoke userdata`, or pass --userdata PATH to an existing file")
        if not 0 <= port <= 65535:
            raise InputError(f"port {port} is out of range", hint="use 1..65535, or 0 for any free port")
        imds = FakeImds(path, tokens=token_mode(tokens), port=port, on_request=reporter.info)
        try:
            reporter.info(f"fake IMDS on {imds.url} (tokens {imds.tokens}), serving {path}\n"
                          f"QEMU option: -netdev {shlex.quote(qemu_netdev(imds.port))} "
                          "-device virtio-net-pci,netdev=net0\n"
                          f"the guest gets {GUEST_ADDRESS}/16, gateway {GUEST_GATEWAY}, DNS {GUEST_DNS}, and "
                          "reads http://169.254.169.254/latest/user-data; Ctrl-C stops")
            imds.serve_forever()
        except KeyboardInterrupt:
            # Ctrl-C is how this task ends: not an interruption of some work, so exit 0.
            reporter.info(f"fake IMDS stopped after {len(imds.requests)} requests")
        finally:
            imds.close()

    return guarded(action)
