"""`launch` and `teardown` against moto: what RunInstances SENT, the user-data, the Route53 record."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest

from bootkiln.commands import publish as cli_actions
from bootkiln.installer.userdata import decode
from bootkiln.publish.aws.ami import TAG_NAME, TAG_VERSION
from bootkiln.publish.aws.launch import TAG_HOSTNAME
from tests.aws.helpers import Recorder, session_with

HOST = "web1.example.com"


def client(service: str) -> Any:
    return boto3.Session().client(service, endpoint_url=os.environ["AWS_ENDPOINT_URL"])


def published(version: int) -> str:
    """An AMI that looks like version N of the profile's family, as publish-ami leaves it."""
    ec2 = client("ec2")
    image_id = str(ec2.register_image(Name=f"bootkiln-site-v{version}", RootDeviceName="/dev/xvda")["ImageId"])
    ec2.create_tags(Resources=[image_id], Tags=[{"Key": TAG_NAME, "Value": "bootkiln-site"},
                                                {"Key": TAG_VERSION, "Value": str(version)}])
    return image_id


@pytest.fixture
def site(tmp_path: Path) -> tuple[str, str]:
    """A profile that launches into a Route53 zone; returns (profile path, zone id)."""
    zone = client("route53").create_hosted_zone(Name="example.com", CallerReference="bootkiln-test")["HostedZone"]
    profile = tmp_path / "site.toml"
    profile.write_text(f"""
[aws]
instance_type = "t3.micro"
route53_zone_id = "{zone['Id']}"
record_ttl = 60
[userdata]
key_type = "ec-p256"
[userdata.puppet]
server = "puppet.example.com"
""")
    return str(profile), str(zone["Id"])


def a_records(zone: str) -> list[dict[str, Any]]:
    sets = client("route53").list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    return [record for record in sets if record["Type"] == "A"]


def test_launch_requires_imdsv2_sends_the_userdata_and_adds_the_record(site: tuple[str, str]) -> None:
    profile, zone = site
    published(1)
    newest = published(2)
    recorder = Recorder()
    assert cli_actions.launch(profile, HOST, session=session_with(("before-send.ec2", recorder.hook)),
                              wait_delay=0.05) == 0

    sent = recorder.only("RunInstances").form()
    assert sent["MetadataOptions.HttpTokens"] == "required"
    assert sent["MetadataOptions.HttpPutResponseHopLimit"] == "1"
    assert sent["MetadataOptions.HttpEndpoint"] == "enabled"
    assert sent["ImageId"] == newest and sent["InstanceType"] == "t3.micro"
    userdata_file = Path(os.environ["BOOTKILN_OUT"]) / "site" / "userdata" / f"{HOST}.gz"
    blob = base64.b64decode(sent["UserData"])
    assert blob == userdata_file.read_bytes()
    assert userdata_file.stat().st_mode & 0o777 == 0o600
    document = decode(blob)
    assert (document.hostname, document.puppet.certname) == (HOST, HOST)

    [instance] = [i for r in client("ec2").describe_instances(Filters=[
        {"Name": f"tag:{TAG_HOSTNAME}", "Values": [HOST]}])["Reservations"] for i in r["Instances"]]
    assert instance["State"]["Name"] == "running"
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert a_records(zone) == [{"Name": f"{HOST}.", "Type": "A", "TTL": 60,
                                "ResourceRecords": [{"Value": instance["PrivateIpAddress"]}]}]


def test_a_second_launch_of_the_same_host_is_refused_and_teardown_cleans_up(
        site: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    profile, zone = site
    published(1)
    assert cli_actions.launch(profile, HOST, wait_delay=0.05) == 0
    recorder = Recorder()
    assert cli_actions.launch(profile, HOST, session=session_with(("before-send.ec2", recorder.hook)),
                              wait_delay=0.05) == 2
    assert f"{HOST} already has instance" in capsys.readouterr().out
    assert recorder.of("RunInstances") == []

    assert cli_actions.teardown(profile, HOST, wait_delay=0.05) == 0
    assert a_records(zone) == []
    states = [i["State"]["Name"] for r in client("ec2").describe_instances(Filters=[
        {"Name": f"tag:{TAG_HOSTNAME}", "Values": [HOST]}])["Reservations"] for i in r["Instances"]]
    assert states == ["terminated"]
    assert cli_actions.teardown(profile, HOST, wait_delay=0.05) == 0
    assert f"no A record for {HOST}" in capsys.readouterr().out


def test_a_hostname_outside_the_zone_is_refused_before_launching(
        site: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    profile, _ = site
    published(1)
    recorder = Recorder()
    assert cli_actions.launch(profile, "web1.example.org", session=session_with(("before-send.ec2", recorder.hook)),
                              wait_delay=0.05) == 2
    assert "web1.example.org is not inside the hosted zone example.com" in capsys.readouterr().out
    assert recorder.of("RunInstances") == []


def test_launch_without_a_published_ami_says_so(site: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    profile, _ = site
    assert cli_actions.launch(profile, HOST, wait_delay=0.05) == 2
    output = capsys.readouterr().out
    assert "no AMI of family bootkiln-site in us-east-1" in output and "invoke publish-ami" in output
