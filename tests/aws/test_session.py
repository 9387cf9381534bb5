"""Region, credentials and endpoint: from the profile and boto3's standard chain, with clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bootkiln.commands import publish as cli_actions
from bootkiln.errors import EnvironmentProblem, InputError
from bootkiln.profile.aws import AwsSettings
from bootkiln.publish.aws.ebs_upload import BLOCK_SIZE
from bootkiln.publish.aws.session import connect
from tests.aws.conftest import MotoServer
from tests.aws.helpers import patterned, sparse_image, write_manifest


def test_the_endpoint_override_reaches_moto(aws_env: MotoServer) -> None:
    ctx = connect(AwsSettings())
    assert (ctx.region, ctx.endpoint_url) == ("us-east-1", aws_env.url)
    assert ctx.client("sts").get_caller_identity()["Account"] == "123456789012"
    assert ctx.client("ec2").meta.endpoint_url == aws_env.url


def test_the_profile_region_wins_over_the_environment() -> None:
    ctx = connect(AwsSettings(region="eu-central-1"))
    assert ctx.region == "eu-central-1"
    assert ctx.client("ec2").meta.region_name == "eu-central-1"


def test_a_missing_region_is_named_with_where_to_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(EnvironmentProblem) as caught:
        connect(AwsSettings())
    assert caught.value.message == "no AWS region is configured"
    assert "aws.region" in caught.value.hint and "AWS_REGION" in caught.value.hint


def test_missing_credentials_fail_the_task_before_any_upload(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    out = Path(os.environ["BOOTKILN_OUT"]) / "creds"
    out.mkdir(parents=True)
    image = sparse_image(out / "disk.img", 4 * BLOCK_SIZE, {0: patterned(0)})
    write_manifest(out / "manifest.json", {"disk.img": "not checked: credentials fail first"})
    profile = tmp_path / "creds.toml"
    profile.write_text("[aws]\n")
    assert cli_actions.publish_ami(str(profile), image=str(image)) == 3
    output = capsys.readouterr().out
    assert "error (environment): no AWS credentials were found in the standard places" in output
    assert "AWS_ACCESS_KEY_ID" in output


def test_a_malformed_endpoint_override_is_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "127.0.0.1:5000")
    with pytest.raises(InputError, match=r"AWS_ENDPOINT_URL='127\.0\.0\.1:5000' is not an http"):
        connect(AwsSettings())


def test_a_missing_named_profile_is_an_environment_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "nonexistent")
    with pytest.raises(EnvironmentProblem, match="AWS profile not found"):
        connect(AwsSettings())
