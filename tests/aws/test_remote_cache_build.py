"""Builds share stages through the S3 tier (moto on loopback) and a real Docker engine.

The bootloader stage is the cheapest real stage (a second or so), so each "machine" (its own
empty local cache) costs seconds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest

from bootkiln.core.engine import Engine
from tests.aws.conftest import MotoServer
from tests.fixtures import engine, invoke

__all__ = ["engine"]
BUCKET = "shared-stages"


def s3() -> Any:
    return boto3.client("s3", region_name="us-east-1")


def machine(tmp_path: Path, name: str) -> tuple[int, str, str]:
    """Build the bootloader stage with an empty local cache; exit status, output and SHA256SUMS."""
    env = {"BOOTKILN_CACHE_REMOTE": f"s3://{BUCKET}/ci", "BOOTKILN_CACHE": str(tmp_path / name / "cache"),
           "BOOTKILN_OUT": str(tmp_path / name / "out")}
    result = invoke(["build", "--stage", "bootloader"], env=env, timeout=600)
    sums = tmp_path / name / "out" / "default" / "SHA256SUMS"
    return result.returncode, result.output, sums.read_text() if sums.exists() else ""


@pytest.mark.docker
def test_a_fresh_machine_takes_stages_from_the_bucket_and_a_corrupt_object_is_rebuilt_and_replaced(
        aws_env: MotoServer, engine: Engine, tmp_path: Path) -> None:
    s3().create_bucket(Bucket=BUCKET)
    status, output, built_sums = machine(tmp_path, "first")
    assert status == 0, output
    assert "bootloader built in" in output, output
    indexes = [o["Key"] for o in s3().list_objects_v2(Bucket=BUCKET, Prefix="ci/entries/")["Contents"]]
    assert len(indexes) == 1 and indexes[0].startswith("ci/entries/bootloader/"), indexes

    status, output, fetched_sums = machine(tmp_path, "second")
    assert status == 0, output
    assert "bootloader from cache" in output and "from the remote cache" in output, output
    assert fetched_sums == built_sums

    index = json.loads(s3().get_object(Bucket=BUCKET, Key=indexes[0])["Body"].read())["index"]
    name, expected = sorted(index["files"].items())[0]
    s3().put_object(Bucket=BUCKET, Key=f"ci/blobs/{expected['sha256']}", Body=b"corrupted in the bucket")
    status, output, rebuilt_sums = machine(tmp_path, "third")
    assert status == 0, output
    assert f"blobs/{expected['sha256']} is corrupt" in output, output
    assert "building it here and replacing the remote entry" in output and "bootloader built in" in output, output
    assert rebuilt_sums == built_sums
    replaced = s3().get_object(Bucket=BUCKET, Key=f"ci/blobs/{expected['sha256']}")["Body"].read()
    assert hashlib.sha256(replaced).hexdigest() == expected["sha256"], f"{name}'s blob was not replaced"
