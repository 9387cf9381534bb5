"""Supply-chain tasks: check a build's folder against its provenance, and make a signing key pair."""

from __future__ import annotations

from pathlib import Path

from bootkiln.commands.guard import guarded
from bootkiln.console import Reporter
from bootkiln.paths import Workspace
from bootkiln.profile.loader import load_profile


def verify_build(profile_ref: str | None, directory: str | None, key: str | None) -> int:
    def action(reporter: Reporter) -> None:
        from bootkiln.attest.keys import configured_key_path, load_public_key
        from bootkiln.attest.verify import verify_folder

        profile = load_profile(profile_ref)
        folder = Path(directory).expanduser().resolve() if directory else Workspace.default().output_dir(
            profile.name)
        key_path = Path(key).expanduser() if key else configured_key_path(profile.signing.key, profile.base_dir)
        public = load_public_key(key_path) if key_path else None
        verified = verify_folder(folder, profile.name, public, profile.resolved())
        reporter.info(f"{folder}: {len(verified.checked)} files match the provenance of profile {profile.name}")
        if verified.unattested:
            reporter.warn(f"not covered by the provenance (nothing vouches for them): {', '.join(verified.unattested)}")
        if verified.signed:
            reporter.info(f"signed by key {verified.keyid}: the signature, every digest and the manifest hold")
        elif verified.attestation.endswith(".dsse.json"):
            reporter.info(f"THE SIGNATURE WAS NOT CHECKED: {verified.attestation} is signed, but no key was given "
                          "or configured; only the digests were checked (give --key PUB.pem)")
        else:
            reporter.info("NOTHING IS SIGNED: no key was given or configured, so only the digests were checked "
                          "against an unsigned statement, which anyone could have rewritten (give --key PUB.pem)")

    return guarded(action)


def secureboot_key(output: str) -> int:
    def action(reporter: Reporter) -> None:
        from bootkiln.profile.sbkeys import generate_test_pair

        private, cert = generate_test_pair(Path(output).expanduser())
        reporter.info(f"private key {private} (RSA 2048, mode 0600: keep it out of images and checkouts)\n"
                      f"certificate {cert} (self-signed, 10 years)\n"
                      "copy both into the profile's folder and set `[secureboot] key = \"secureboot.key\"`, "
                      "`cert = \"secureboot.crt\"`; enrol the certificate in the firmware's db or with "
                      "`mokutil --import` (docs/secureboot.md)")

    return guarded(action)


def signing_key(output: str, algorithm: str) -> int:
    def action(reporter: Reporter) -> None:
        from bootkiln.attest.keys import ENV_KEY, generate_key_pair, keyid, load_public_key

        private, public = generate_key_pair(Path(output).expanduser(), algorithm)
        reporter.info(f"private key {private} (mode 0600: keep it out of the checkout and out of images)\n"
                      f"public key  {public} (key id {keyid(load_public_key(public))})\n"
                      f"sign builds with `[signing] key = \"{private}\"` in the profile or {ENV_KEY}={private}; "
                      f"check them with `invoke verify-build --key {public}`")

    return guarded(action)
