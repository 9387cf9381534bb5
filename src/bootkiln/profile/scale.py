"""The `[cache]` and `[cluster]` profile tables: where stage results are shared, and where stages run.

Neither changes what is built (a stage's cache key never depends on them), so they are left out of the
profile a manifest records. Environment variables override both, so one profile serves a laptop and
a build farm.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from bootkiln.profile.model import StrictModel

S3Url = Annotated[str, Field(pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._/-]*)?$")]
SchedulerAddress = Annotated[str, Field(pattern=r"^(tcp|tls)://[A-Za-z0-9.:\[\]-]+:[0-9]{1,5}$")]


class CacheSettings(StrictModel):
    remote: S3Url | None = Field(
        default=None,
        description="S3 bucket (and prefix) that shares stage results between machines, e.g. "
        "`s3://bucket/bootkiln`; `BOOTKILN_CACHE_REMOTE` overrides it. Credentials come from boto3's standard "
        "chain; `AWS_ENDPOINT_URL` points at MinIO, Ceph or moto",
        json_schema_extra={"shown_default": "none: this machine's cache only"},
    )
    require_signed: bool = Field(
        default=False,
        description="refuse remote cache entries whose index is not signed by this build's signing key "
        "(`[signing] key`); entries this build uploads are signed whenever a key is set",
    )


class ClusterSettings(StrictModel):
    scheduler: SchedulerAddress | None = Field(
        default=None,
        description="Dask scheduler that runs the stages on its workers, e.g. `tcp://build1:8786`; "
        "`BOOTKILN_SCHEDULER` or `--scheduler` override it. Needs `[cache] remote`, which carries results "
        "between workers",
        json_schema_extra={"shown_default": "none: stages run in threads on this machine"},
    )
