"""An instance of a published AMI with its user-data, its DNS name in Route53, and its teardown.

Instances are found again by the `bootkiln:hostname` tag, so teardown needs only the hostname.
IMDSv2 is required with a hop limit of 1: the installer fetches its user-data (which holds the
host's private key) with a session token, and nothing behind another network hop, such as a
container on the host, can reach the metadata service.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bootkiln.errors import EnvironmentProblem, InputError
from bootkiln.installer.userdata import EC2_USERDATA_LIMIT
from bootkiln.profile.aws import AwsSettings
from bootkiln.publish.aws.ami import TAG_PROFILE, family_images
from bootkiln.publish.aws.session import AwsContext, translated

TAG_HOSTNAME = "bootkiln:hostname"
LIVE_STATES = ["pending", "running", "stopping", "stopped"]
METADATA_OPTIONS = {"HttpTokens": "required", "HttpPutResponseHopLimit": 1, "HttpEndpoint": "enabled"}


@dataclass(frozen=True)
class Launched:
    instance_id: str
    image_id: str
    hostname: str
    address: str
    record: str | None


def latest_image(ctx: AwsContext, family: str) -> str:
    members = family_images(ctx.client("ec2"), family)
    if not members:
        raise InputError(f"no AMI of family {family} in {ctx.region}",
                         hint="publish one first (invoke publish-ami), or pass --ami ami-...")
    return members[-1].image_id


def live_instances(ec2: Any, hostname: str) -> list[dict[str, Any]]:
    with translated(f"looking for instances of {hostname}"):
        reservations = ec2.describe_instances(Filters=[{"Name": f"tag:{TAG_HOSTNAME}", "Values": [hostname]},
                                                       {"Name": "instance-state-name", "Values": LIVE_STATES}])
    return [instance for reservation in reservations["Reservations"] for instance in reservation["Instances"]]


def _record_name(hostname: str) -> str:
    return hostname.rstrip(".") + "."


class Launcher:
    def __init__(self, ctx: AwsContext, settings: AwsSettings, *, info: Callable[[str], None],
                 wait_delay: float = 15.0, wait_timeout: float = 900.0) -> None:
        self.ctx = ctx
        self.settings = settings
        self.info = info
        self.wait_delay = wait_delay
        self.attempts = max(1, math.ceil(wait_timeout / wait_delay))

    def _waiter_config(self) -> dict[str, Any]:
        return {"Delay": self.wait_delay, "MaxAttempts": self.attempts}

    def launch(self, *, hostname: str, image_id: str, userdata: bytes, profile: str) -> Launched:
        if len(userdata) > EC2_USERDATA_LIMIT:
            raise InputError(f"user-data is {len(userdata):,} bytes, over EC2's {EC2_USERDATA_LIMIT:,}-byte limit",
                             hint="run invoke userdata to see the per-part budget")
        ec2 = self.ctx.client("ec2")
        running = live_instances(ec2, hostname)
        if running:
            raise InputError(f"{hostname} already has instance {running[0]['InstanceId']} "
                             f"({running[0]['State']['Name']})",
                             hint=f"tear it down first: invoke teardown --hostname {hostname}")
        zone = self._zone_for(hostname)  # checked before anything is launched
        tags = [{"Key": "Name", "Value": hostname}, {"Key": TAG_HOSTNAME, "Value": hostname},
                {"Key": TAG_PROFILE, "Value": profile}]
        params: dict[str, Any] = {
            "ImageId": image_id, "InstanceType": self.settings.instance_type, "MinCount": 1, "MaxCount": 1,
            "UserData": userdata, "MetadataOptions": METADATA_OPTIONS, "ClientToken": str(uuid.uuid4()),
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tags}, {"ResourceType": "volume", "Tags": tags}],
        }
        if self.settings.subnet_id:
            params["SubnetId"] = self.settings.subnet_id
        if self.settings.security_group_ids:
            params["SecurityGroupIds"] = list(self.settings.security_group_ids)
        if self.settings.key_name:
            params["KeyName"] = self.settings.key_name
        with translated(f"launching {hostname} from {image_id}"):
            instance_id = str(ec2.run_instances(**params)["Instances"][0]["InstanceId"])
        self.info(f"launched {instance_id} for {hostname}; waiting until it runs")
        teardown_hint = f"invoke teardown --hostname {hostname} removes it"
        with translated(f"waiting for {instance_id} to run", hint=teardown_hint):
            ec2.get_waiter("instance_running").wait(InstanceIds=[instance_id], WaiterConfig=self._waiter_config())
            instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
        key = "PublicIpAddress" if self.settings.record_address == "public" else "PrivateIpAddress"
        address = instance.get(key)
        if not address:
            raise EnvironmentProblem(f"{instance_id} runs but has no {self.settings.record_address} address",
                                     hint=f"use a subnet that gives one, or set aws.record_address; {teardown_hint}")
        record = None
        if zone is not None:
            record = self._change_record("UPSERT", zone, hostname, [address])
        return Launched(instance_id, image_id, hostname, address, record)

    def teardown(self, *, hostname: str) -> list[str]:
        """Remove the DNS record, then terminate the instances; each step is safe to repeat."""
        ec2 = self.ctx.client("ec2")
        done: list[str] = []
        instances = live_instances(ec2, hostname)
        zone = self._zone_for(hostname)
        if zone is not None:
            current = self._current_record(zone, hostname)
            if current is None:
                done.append(f"no A record for {hostname} in {zone}")
            else:
                self._change_record("DELETE", zone, hostname, [r["Value"] for r in current["ResourceRecords"]],
                                    ttl=int(current.get("TTL", self.settings.record_ttl)))
                done.append(f"deleted the A record {hostname} -> "
                            f"{', '.join(r['Value'] for r in current['ResourceRecords'])}")
        ids = [instance["InstanceId"] for instance in instances]
        if ids:
            with translated(f"terminating {', '.join(ids)}"):
                ec2.terminate_instances(InstanceIds=ids)
                ec2.get_waiter("instance_terminated").wait(InstanceIds=ids, WaiterConfig=self._waiter_config())
            done.append(f"terminated {', '.join(ids)}")
        else:
            done.append(f"no instance tagged {TAG_HOSTNAME}={hostname}")
        return done

    def _zone_for(self, hostname: str) -> str | None:
        zone_id = self.settings.route53_zone_id
        if zone_id is None:
            return None
        route53 = self.ctx.client("route53")
        with translated(f"reading Route53 hosted zone {zone_id}", hint="check aws.route53_zone_id"):
            zone_name = str(route53.get_hosted_zone(Id=zone_id)["HostedZone"]["Name"]).rstrip(".")
        if hostname != zone_name and not hostname.endswith("." + zone_name):
            raise InputError(f"{hostname} is not inside the hosted zone {zone_name} ({zone_id})",
                             hint="use a hostname under that zone, or set aws.route53_zone_id to the right zone")
        return zone_id

    def _current_record(self, zone_id: str, hostname: str) -> dict[str, Any] | None:
        route53 = self.ctx.client("route53")
        with translated(f"reading the A record of {hostname}"):
            sets = route53.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName=_record_name(hostname),
                                                     StartRecordType="A", MaxItems="1")["ResourceRecordSets"]
        found = [s for s in sets if s["Name"] == _record_name(hostname) and s["Type"] == "A"]
        return found[0] if found else None

    def _change_record(self, action: str, zone_id: str, hostname: str, addresses: list[str],
                       ttl: int | None = None) -> str:
        route53 = self.ctx.client("route53")
        change = {"Action": action, "ResourceRecordSet": {
            "Name": _record_name(hostname), "Type": "A", "TTL": self.settings.record_ttl if ttl is None else ttl,
            "ResourceRecords": [{"Value": address} for address in addresses]}}
        with translated(f"{action} of the A record {hostname} in {zone_id}"):
            info = route53.change_resource_record_sets(
                HostedZoneId=zone_id, ChangeBatch={"Comment": f"bootkiln {action.lower()} {hostname}",
                                                   "Changes": [change]})["ChangeInfo"]
            route53.get_waiter("resource_record_sets_changed").wait(Id=info["Id"], WaiterConfig=self._waiter_config())
        return f"{hostname} A {', '.join(addresses)} (zone {zone_id})"
