"""`publish-ami` end to end against moto: what RegisterImage SENT, versions, retention, collisions, faults."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest

from bootkiln.commands import publish as cli_actions
from bootkiln.hashing import sha256_file
from bootkiln.publish.aws.ami import TAG_MANIFEST, TAG_NAME, TAG_SNAPSHOT, TAG_VERSION
from bootkiln.publish.aws.ebs_upload import BLOCK_SIZE
from tests.aws.helpers import (
    Faults,
    Recorder,
    image_block,
    manifest_seal,
    patterned,
    session_with,
    sparse_image,
    write_manifest,
)

FAMILY = "bootkiln-pub"


def ec2(region: str = "us-east-1") -> Any:
    return boto3.Session().client("ec2", region_name=region, endpoint_url=os.environ["AWS_ENDPOINT_URL"])


def write_profile(tmp_path: Path, aws: str = "", workers: int = 3) -> str:
    path = tmp_path / "pub.toml"
    path.write_text(f'description = "publish test"\n[aws]\nboot_mode = "uefi"\nworkers = {workers}\n{aws}\n')
    return str(path)


def build(seed: int, blocks: tuple[int, ...] = (0, 3, 15)) -> tuple[Path, str]:
    """An 8 MiB image in out/pub/ and its manifest; returns the image and the manifest's seal."""
    out = Path(os.environ["BOOTKILN_OUT"]) / "pub"
    out.mkdir(parents=True, exist_ok=True)
    image = sparse_image(out / "disk.img", 16 * BLOCK_SIZE, {index: patterned(index + seed) for index in blocks})
    manifest = write_manifest(out / "manifest.json", {"disk.img": sha256_file(image)}, extra=f"build {seed}")
    return image, manifest_seal(manifest)


def family() -> list[dict[str, Any]]:
    images = ec2().describe_images(Owners=["self"], Filters=[{"Name": f"tag:{TAG_NAME}", "Values": [FAMILY]}])
    return sorted(images["Images"], key=lambda image: image["Name"])


def tags(resource: dict[str, Any]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in resource.get("Tags", [])}


def snapshot_exists(snapshot_id: str, region: str = "us-east-1") -> bool:
    return bool(ec2(region).describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [snapshot_id]}])["Snapshots"])


def publish(profile: str, *hooks: tuple[str, Any]) -> int:
    return cli_actions.publish_ami(profile, session=session_with(*hooks), wait_delay=0.05)


def test_register_image_is_sent_everything_moto_drops(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = write_profile(tmp_path, f'ami_name = "{FAMILY}"')
    image, manifest_sha = build(1)
    recorder = Recorder()
    assert publish(profile, ("before-send.ec2", recorder.hook), ("before-send.ebs", recorder.hook)) == 0

    [ami] = family()
    snapshot_id = tags(ami)[TAG_SNAPSHOT]
    sent = recorder.only("RegisterImage").form()
    assert sent["Name"] == f"{FAMILY}-v1"
    assert sent["Architecture"] == "x86_64" and sent["VirtualizationType"] == "hvm"
    assert sent["RootDeviceName"] == "/dev/xvda"
    assert sent["EnaSupport"] == "true" and sent["BootMode"] == "uefi" and sent["ImdsSupport"] == "v2.0"
    assert sent["BlockDeviceMapping.1.DeviceName"] == "/dev/xvda"
    assert sent["BlockDeviceMapping.1.Ebs.SnapshotId"] == snapshot_id
    assert sent["BlockDeviceMapping.1.Ebs.VolumeSize"] == "1"
    assert sent["BlockDeviceMapping.1.Ebs.VolumeType"] == "gp3"
    assert sent["BlockDeviceMapping.1.Ebs.DeleteOnTermination"] == "true"
    sent_tags = {sent[key]: sent[key.replace(".Key", ".Value")] for key in sent
                 if key.startswith("TagSpecification.1.Tag.") and key.endswith(".Key")}
    assert sent_tags[TAG_MANIFEST] == manifest_sha and sent_tags[TAG_SNAPSHOT] == snapshot_id

    assert tags(ami)[TAG_MANIFEST] == manifest_sha and tags(ami)[TAG_VERSION] == "1"
    [snapshot] = ec2().describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
    assert tags(snapshot)[TAG_MANIFEST] == manifest_sha and snapshot["State"] == "completed"
    ebs = boto3.Session().client("ebs", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    for entry in ebs.list_snapshot_blocks(SnapshotId=snapshot_id)["Blocks"]:
        data = ebs.get_snapshot_block(SnapshotId=snapshot_id, BlockIndex=entry["BlockIndex"],
                                      BlockToken=entry["BlockToken"])["BlockData"].read()
        assert data == image_block(image, entry["BlockIndex"])
    assert len(recorder.of("PutSnapshotBlock")) == 3
    output = capsys.readouterr().out
    assert f"AMI {FAMILY}-v1: {ami['ImageId']} in us-east-1" in output and "3 of 16 blocks sent" in output


def test_same_build_is_not_published_twice_and_a_new_build_is_the_next_version(tmp_path: Path) -> None:
    profile = write_profile(tmp_path, f'ami_name = "{FAMILY}"')
    build(1)
    assert publish(profile) == 0
    recorder = Recorder()
    assert publish(profile, ("before-send.ebs", recorder.hook), ("before-send.ec2", recorder.hook)) == 0
    assert recorder.of("StartSnapshot") == [] and recorder.of("RegisterImage") == []
    assert [image["Name"] for image in family()] == [f"{FAMILY}-v1"]

    _, second = build(2)
    assert publish(profile) == 0
    images = family()
    assert [image["Name"] for image in images] == [f"{FAMILY}-v1", f"{FAMILY}-v2"]
    assert tags(images[1])[TAG_MANIFEST] == second


def test_an_arm64_image_is_registered_as_arm64_uefi(tmp_path: Path) -> None:
    path = tmp_path / "pub.toml"
    path.write_text(f'description = "publish test"\n[debian]\narchitecture = "arm64"\n[aws]\nami_name = "{FAMILY}"\n')
    build(7)
    recorder = Recorder()
    assert publish(str(path), ("before-send.ec2", recorder.hook), ("before-send.ebs", recorder.hook)) == 0
    sent = recorder.only("RegisterImage").form()
    assert sent["Architecture"] == "arm64" and sent["BootMode"] == "uefi"
    assert sent["EnaSupport"] == "true" and sent["VirtualizationType"] == "hvm"
    [ami] = family()  # moto keeps no Architecture: what was sent is the check
    assert tags(ami)[TAG_VERSION] == "1"


def test_retention_deregisters_old_versions_and_deletes_their_snapshots(tmp_path: Path) -> None:
    profile = write_profile(tmp_path, f'ami_name = "{FAMILY}"\nretention = 2')
    snapshots = []
    for seed in (1, 2, 3):
        build(seed)
        assert publish(profile) == 0
        newest = family()[-1]
        snapshots.append(tags(newest)[TAG_SNAPSHOT])
    assert [image["Name"] for image in family()] == [f"{FAMILY}-v2", f"{FAMILY}-v3"]
    assert [snapshot_exists(snapshot) for snapshot in snapshots] == [False, True, True]


def test_a_foreign_ami_with_the_next_name_is_refused_before_uploading(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = write_profile(tmp_path, f'ami_name = "{FAMILY}"')
    build(1)
    foreign = ec2().register_image(Name=f"{FAMILY}-v1", RootDeviceName="/dev/xvda")["ImageId"]
    recorder = Recorder()
    assert publish(profile, ("before-send.ebs", recorder.hook)) == 2
    error = capsys.readouterr().out
    assert f"an AMI named '{FAMILY}-v1' already exists in us-east-1 ({foreign})" in error
    assert "hint:" in error and "aws.ami_name" in error
    assert recorder.sent == [], "nothing is uploaded for an AMI that cannot be registered"


def test_a_name_taken_at_registration_time_deletes_the_snapshot(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = write_profile(tmp_path, f'ami_name = "{FAMILY}"')
    build(1)
    taken = Faults(fail=lambda call: True, status=400, code="InvalidAMIName.Duplicate", protocol="ec2")
    recorder = Recorder()
    assert publish(profile, ("before-send.ec2.RegisterImage", taken.hook),
                   ("before-send.ebs.StartSnapshot", recorder.hook)) == 2
    error = capsys.readouterr().out
    assert "InvalidAMIName.Duplicate" in error and "was deleted; no AMI was registered" in error
    assert family() == []
    assert ec2().describe_snapshots(OwnerIds=["self"], Filters=[
        {"Name": f"tag:{TAG_NAME}", "Values": [FAMILY]}])["Snapshots"] == []
    assert len(recorder.of("StartSnapshot")) == 1


def test_an_upload_that_fails_part_way_registers_nothing_and_deletes_the_snapshot(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = write_profile(tmp_path, f'ami_name = "{FAMILY}"', workers=1)
    build(1, blocks=tuple(range(12)))
    broken = Faults(fail=lambda call: call > 5, status=403, code="AccessDeniedException")
    recorder = Recorder()
    assert publish(profile, ("before-send.ebs.PutSnapshotBlock", broken.hook),
                   ("before-send.ec2", recorder.hook)) == 3
    error = capsys.readouterr().out
    assert "writing block 5 (PutSnapshotBlock)" in error and "no AMI was registered" in error
    assert recorder.of("RegisterImage") == []
    assert ec2().describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [f"{FAMILY}-v1"]}])[
        "Images"] == []
    [delete] = recorder.of("DeleteSnapshot")
    assert not snapshot_exists(delete.form()["SnapshotId"])


def test_sharing_and_copies_to_other_regions(tmp_path: Path) -> None:
    profile = write_profile(tmp_path, f'ami_name = "{FAMILY}"\nshare_accounts = ["111122223333"]\n'
                                      'copy_regions = ["eu-west-1"]')
    _, manifest_sha = build(1)
    recorder = Recorder()
    assert publish(profile, ("before-send.ec2", recorder.hook)) == 0
    [home] = family()
    shares = recorder.of("ModifyImageAttribute")
    assert len(shares) == 2
    assert all(share.form()["LaunchPermission.Add.1.UserId"] == "111122223333" for share in shares)
    copies = ec2("eu-west-1").describe_images(Owners=["self"], Filters=[
        {"Name": f"tag:{TAG_NAME}", "Values": [FAMILY]}])["Images"]
    assert [(copy["Name"], tags(copy)[TAG_MANIFEST]) for copy in copies] == [(f"{FAMILY}-v1", manifest_sha)]
    copied = recorder.only("CopyImage").form()
    assert (copied["SourceImageId"], copied["SourceRegion"]) == (home["ImageId"], "us-east-1")
    permissions = ec2().describe_image_attribute(ImageId=home["ImageId"], Attribute="launchPermission")
    assert permissions["LaunchPermissions"] == [{"UserId": "111122223333"}]

    again = Recorder()
    assert publish(profile, ("before-send.ec2", again.hook)) == 0
    assert again.of("CopyImage") == [], "a copy made before is found, not made again"


def test_bad_inputs_are_refused_before_anything_is_uploaded(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = write_profile(tmp_path)
    assert publish(profile) == 2
    assert "no disk image at" in capsys.readouterr().out

    image, _ = build(1)
    with image.open("r+b") as handle:
        handle.write(b"changed after the build")
    assert publish(profile) == 2
    assert "does not match the build manifest" in capsys.readouterr().out

    image, _ = build(2)
    manifest = image.parent / "manifest.json"
    manifest.write_text(manifest.read_text().replace("build 2", "build 3"))
    assert publish(profile) == 2
    assert "the manifest was edited after the build wrote it" in capsys.readouterr().out

    build(3)
    home = write_profile(tmp_path, 'copy_regions = ["us-east-1"]')
    recorder = Recorder()
    assert publish(home, ("before-send.ebs", recorder.hook)) == 2
    assert "aws.copy_regions lists us-east-1, the region the AMI is published in" in capsys.readouterr().out
    assert recorder.sent == []

    arm = tmp_path / "arm.toml"
    arm.write_text('[debian]\narchitecture = "amd64"\n[aws]\narchitecture = "arm64"\n')
    assert cli_actions.publish_ami(str(arm)) == 2
    assert "key 'aws.architecture' is arm64, but the image is amd64" in capsys.readouterr().out
