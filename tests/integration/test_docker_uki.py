"""Your own Secure Boot key, in the builder container: the unsigned Unified Kernel Image and its
signature come out the same twice, sbverify accepts the signed UKI with the profile's certificate and
rejects it with another, the ISO's EFI image boots exactly that UKI, and the key appears in no
artifact, cache entry or manifest (only its certificate's fingerprint does)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from bootkiln.core.engine import files_upload
from bootkiln.core.runner import Builder
from bootkiln.errors import CommandFailed
from bootkiln.formats.fat import FatVolume
from bootkiln.stages.artifacts import UKI_MEDIA, uki_signed, uki_unsigned
from bootkiln.stages.uki import UkiStage
from bootkiln.stages.ukisign import UkiSignStage
from tests.fixtures import OwnKeyBuild


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_uki_and_its_signature_are_the_same_twice(ownkey: OwnKeyBuild, tmp_path: Path) -> None:
    """Each stage run again, outside the cache, gives the bytes the cached entry holds."""
    build = ownkey.build
    for stage, name, inputs in ((UkiStage(), uki_unsigned, ("kernel", "initramfs")),
                                (UkiSignStage(), uki_signed, ("uki",))):
        scratch = tmp_path / stage.name
        scratch.mkdir()
        stage.build(build, {required: build.stage(required) for required in inputs}, scratch)
        for medium in UKI_MEDIA:
            assert digest(scratch / name(medium)) == digest(build.stage(stage.name).artifact(name(medium))), \
                f"{stage.name} differs for the {medium}"


def test_sbverify_accepts_the_profiles_certificate_only(ownkey: OwnKeyBuild) -> None:
    build = ownkey.build
    other_cert = ownkey.other_folder / "secureboot.crt"
    files = {"uki.efi": (build.stage("ukisign").artifact(uki_signed("iso")).read_bytes(), 0o644),
             "mine.crt": ((ownkey.folder / "secureboot.crt").read_bytes(), 0o644),
             "other.crt": (other_cert.read_bytes(), 0o644)}

    def sbverify(cert: str) -> None:
        build.runner.run(["sbverify", "--cert", f"/bootkiln/{cert}", "/bootkiln/uki.efi"], stage="sbverify",
                         where=Builder(image=build.builder.tag, uploads=[files_upload(files)]))

    sbverify("mine.crt")
    with pytest.raises(CommandFailed):
        sbverify("other.crt")


def test_the_efi_image_boots_the_signed_uki(ownkey: OwnKeyBuild) -> None:
    build = ownkey.build
    with build.stage("bootloader").artifact("efiboot.img").open("rb") as handle:
        volume = FatVolume(handle)
        entries = dict(volume.walk())
        entry = entries["EFI/BOOT/BOOTX64.EFI"]
        loader = volume.content(volume.first_cluster(entry), int.from_bytes(entry[28:32], "little"))
    assert loader == build.stage("ukisign").artifact(uki_signed("iso")).read_bytes()
    assert "EFI/BOOT/grubx64.efi" not in entries, "no shim chain beside the UKI"


def test_the_key_is_in_no_output_and_the_manifest_names_the_certificate(ownkey: OwnKeyBuild) -> None:
    build = ownkey.build
    out = build.publish()
    key_lines = [line.encode() for line in (ownkey.folder / "secureboot.key").read_text().splitlines()[1:-1]]
    entries = [build.stage(name).entry for name in ("uki", "ukisign", "bootloader", "iso")]
    for folder in [out, *entries]:
        for path in folder.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert not any(line in data for line in key_lines), f"key material in {path}"
    manifest = json.loads((out / "manifest.json").read_text())
    cert = x509.load_pem_x509_certificate((ownkey.folder / "secureboot.crt").read_bytes())
    assert manifest["stages"]["ukisign"]["cert_sha256"] == cert.fingerprint(hashes.SHA256()).hex()
