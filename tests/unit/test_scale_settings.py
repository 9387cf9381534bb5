"""Where a build runs and how workers are routed: settings precedence and names, without a cluster."""

from __future__ import annotations

import pytest

from bootkiln.errors import InputError
from bootkiln.profile.schema import Profile
from bootkiln.scale.cluster import scheduler_address, worker_resources
from bootkiln.scale.matrix import with_architecture
from bootkiln.scale.worker import worker_argv


def test_the_option_beats_the_environment_which_beats_the_profile() -> None:
    profile = Profile.model_validate({"cluster": {"scheduler": "tcp://profile:8786"}})
    env = {"BOOTKILN_SCHEDULER": "tcp://env:8786"}
    assert scheduler_address("tcp://option:8786", profile, env) == "tcp://option:8786"
    assert scheduler_address(None, profile, env) == "tcp://env:8786"
    assert scheduler_address(None, profile, {}) == "tcp://profile:8786"
    assert scheduler_address(None, Profile(), {}) is None


def test_a_scheduler_address_that_is_not_a_dask_address_is_an_input_error() -> None:
    with pytest.raises(InputError, match="'http://x:8786' is not a Dask address"):
        scheduler_address("http://x:8786", None, {})


def test_the_profile_refuses_a_bad_remote_or_scheduler() -> None:
    with pytest.raises(ValueError, match="remote"):
        Profile.model_validate({"cache": {"remote": "https://bucket"}})
    with pytest.raises(ValueError, match="scheduler"):
        Profile.model_validate({"cluster": {"scheduler": "build1"}})


def test_cache_and_cluster_settings_do_not_change_the_recorded_profile() -> None:
    shared = Profile.model_validate({"cache": {"remote": "s3://bucket/p"}, "cluster": {"scheduler": "tcp://h:1"}})
    assert shared.resolved() == Profile().resolved()


@pytest.mark.parametrize(("engine", "resource"), [("x86_64", "arch-amd64"), ("aarch64", "arch-arm64"),
                                                  ("s390x", "arch-s390x")])
def test_workers_advertise_the_debian_name_of_their_engines_architecture(engine: str, resource: str) -> None:
    assert worker_resources(engine) == {resource: 1}
    assert worker_argv("tcp://s:8786", engine, 3)[-2:] == ["--resources", f"{resource}=3"]


def test_a_matrix_architecture_gets_its_own_output_name() -> None:
    profile = Profile()
    assert with_architecture(profile, "amd64") is profile
    other = with_architecture(profile, "arm64")
    assert (other.name, other.debian.architecture) == ("default-arm64", "arm64")
