"""boto3 clients for a profile, and AWS failures turned into bootkiln errors.

The region comes from the profile (`aws.region`) or boto3's standard chain (AWS_REGION,
AWS_DEFAULT_REGION, the config file); credentials only from the standard chain. AWS_ENDPOINT_URL
sends every client to one endpoint, which is how the tests reach moto on loopback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ProfileNotFound,
)

from bootkiln import __version__
from bootkiln.errors import BootkilnError, EnvironmentProblem, InputError
from bootkiln.profile.aws import AwsSettings

ENDPOINT_ENV = "AWS_ENDPOINT_URL"
REGION_HINT = ("set aws.region in the profile, or AWS_REGION / AWS_DEFAULT_REGION, or region in ~/.aws/config "
               "(AWS_PROFILE picks the section)")
CREDENTIALS_HINT = ("give credentials the standard way: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE "
                    "with ~/.aws/credentials or `aws sso login`, or an instance or task role")
AUTH_CODES = frozenset({"AuthFailure", "UnauthorizedOperation", "AccessDenied", "AccessDeniedException",
                        "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException",
                        "UnrecognizedClientException", "OptInRequired"})


@dataclass
class AwsContext:
    """One boto3 session, its region and endpoint; clients are made once and shared (they are thread-safe)."""

    session: Any
    region: str
    endpoint_url: str | None = None
    _clients: dict[tuple[str, str, int, int], Any] = field(default_factory=dict, repr=False)

    def client(self, service: str, region: str | None = None, *, attempts: int = 8, pool: int = 10) -> Any:
        """A client; `attempts` is botocore's own retry budget (1 where bootkiln retries by itself)."""
        key = (service, region or self.region, attempts, pool)
        if key not in self._clients:
            config = Config(retries={"mode": "standard", "total_max_attempts": attempts},
                            max_pool_connections=pool, connect_timeout=10, read_timeout=60,
                            user_agent_extra=f"bootkiln/{__version__}")
            with translated(f"making a {service} client"):
                self._clients[key] = self.session.client(service, region_name=key[1], endpoint_url=self.endpoint_url,
                                                         config=config)
        return self._clients[key]


def endpoint_from_env() -> str | None:
    value = os.environ.get(ENDPOINT_ENV, "").strip()
    if not value:
        return None
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", value):
        raise InputError(f"{ENDPOINT_ENV}={value!r} is not an http(s) URL",
                         hint=f"unset {ENDPOINT_ENV} to use AWS, or set it like http://127.0.0.1:5000")
    return value.rstrip("/")


def connect(settings: AwsSettings, *, session: Any | None = None) -> AwsContext:
    """Check region and credentials before anything is sent, so a missing one is named, not a stack trace."""
    endpoint = endpoint_from_env()
    try:
        session = session if session is not None else boto3.Session()
        region = settings.region or session.region_name
        credentials = session.get_credentials()
    except ProfileNotFound as exc:
        raise EnvironmentProblem(f"AWS profile not found: {exc}",
                                 hint="fix AWS_PROFILE, or add that profile to ~/.aws/config") from None
    except BotoCoreError as exc:
        raise EnvironmentProblem(f"cannot read the AWS configuration: {exc}", hint=CREDENTIALS_HINT) from None
    if not region:
        raise EnvironmentProblem("no AWS region is configured", hint=REGION_HINT)
    if credentials is None:
        raise EnvironmentProblem("no AWS credentials were found in the standard places", hint=CREDENTIALS_HINT)
    return AwsContext(session=session, region=region, endpoint_url=endpoint)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def http_status(exc: BaseException) -> int:
    if isinstance(exc, ClientError):
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 0


def aws_failure(exc: BaseException, doing: str, hint: str = "") -> BootkilnError:
    """An AWS or botocore exception as a bootkiln error that says what was being done."""
    if isinstance(exc, BootkilnError):
        return exc
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "") or "no message"
        text = f"AWS refused {doing}: {code or f'HTTP {http_status(exc)}'}: {message}"
        if code in AUTH_CODES:
            return EnvironmentProblem(text, hint=hint or "the credentials in use lack an IAM permission for this "
                                                         "call, or have expired")
        if code.startswith(("InvalidParameter", "InvalidAMIName", "MissingParameter", "ValidationException")):
            return InputError(text, hint=hint or "check the [aws] settings of the profile")
        return EnvironmentProblem(text, hint=hint)
    if isinstance(exc, NoCredentialsError):
        return EnvironmentProblem(f"no AWS credentials while {doing}", hint=CREDENTIALS_HINT)
    if isinstance(exc, NoRegionError):
        return EnvironmentProblem(f"no AWS region while {doing}", hint=REGION_HINT)
    if isinstance(exc, EndpointConnectionError):
        return EnvironmentProblem(f"cannot reach AWS while {doing}: {exc}",
                                  hint=hint or f"check the network, the region and {ENDPOINT_ENV}")
    return EnvironmentProblem(f"AWS call failed while {doing}: {exc}", hint=hint)


@contextmanager
def translated(doing: str, hint: str = "") -> Iterator[None]:
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise aws_failure(exc, doing, hint) from exc
