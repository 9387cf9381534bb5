"""The [aws] profile table and what an AMI of a profile looks like (no AWS calls)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bootkiln.errors import InputError
from bootkiln.profile.aws import AwsSettings
from bootkiln.profile.loader import load_profile
from bootkiln.profile.schema import Profile
from bootkiln.publish.aws.ami import ImageSpec

WriteProfile = Callable[[str], Path]


def spec(profile: Profile) -> ImageSpec:
    return ImageSpec.from_settings(profile.aws, profile=profile.name, debian_architecture=profile.debian.architecture,
                                   profile_description=profile.description, where="p.toml")


def test_defaults_need_no_aws_table() -> None:
    image = spec(Profile())
    assert (image.family, image.architecture, image.boot_mode, image.ena) == ("bootkiln-default", "x86_64",
                                                                              "uefi-preferred", True)
    assert (image.workers, image.retention, image.volume_type) == (8, None, "gp3")
    assert Profile().aws == AwsSettings()


def test_an_aws_table_is_read_strictly(write_profile: WriteProfile) -> None:
    profile = load_profile(str(write_profile(
        '[aws]\nregion = "eu-west-1"\nami_name = "installer"\nretention = 3\nworkers = 16\n'
        'share_accounts = ["111122223333"]\ncopy_regions = ["eu-central-1"]\nroute53_zone_id = "Z123ABC"\n')))
    assert (profile.aws.region, profile.aws.retention, profile.aws.workers) == ("eu-west-1", 3, 16)
    assert spec(profile).family == "installer"

    with pytest.raises(InputError, match=r"key 'aws.regoin': unknown key \(allowed here: ami_name, architecture"):
        load_profile(str(write_profile('[aws]\nregoin = "eu-west-1"\n')))
    with pytest.raises(InputError, match=r"key 'aws.share_accounts.0'"):
        load_profile(str(write_profile('[aws]\nshare_accounts = ["12345"]\n')))
    with pytest.raises(InputError, match="kms_key_arn is set but encrypted is false"):
        load_profile(str(write_profile('[aws]\nkms_key_arn = "arn:aws:kms:eu-west-1:111122223333:key/x"\n')))
    with pytest.raises(InputError, match="lists each entry once"):
        load_profile(str(write_profile('[aws]\ncopy_regions = ["eu-west-1", "eu-west-1"]\n')))
    with pytest.raises(InputError, match=r"key 'aws.workers'"):
        load_profile(str(write_profile('[aws]\nworkers = 0\n')))


def test_the_architecture_follows_debian_and_mismatches_are_named(write_profile: WriteProfile) -> None:
    assert spec(load_profile(str(write_profile('[debian]\narchitecture = "arm64"\n[aws]\nboot_mode = "uefi"\n'
                                                )))).architecture == "arm64"
    with pytest.raises(InputError, match="arm64 instances boot UEFI only"):
        spec(load_profile(str(write_profile('[debian]\narchitecture = "arm64"\n[aws]\nboot_mode = "legacy-bios"\n'))))
    with pytest.raises(InputError, match="'i386' is not a supported architecture"):
        load_profile(str(write_profile('[debian]\narchitecture = "i386"\n')))
    with pytest.raises(InputError, match=r"key 'aws\.architecture' is arm64, but the image is amd64"):
        spec(load_profile(str(write_profile('[aws]\narchitecture = "arm64"\n'))))
