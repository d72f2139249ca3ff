"""host_devices: the pipeline's command lines get one CPU device per core, unless told otherwise."""

import json
import os
import subprocess
import sys

import pytest

from gramr2_jax import host_devices, hostmem
from tests.conftest import subprocess_env

FLAG = "--xla_force_host_platform_device_count"


@pytest.fixture
def cpu_env(monkeypatch):
    """A process about to start JAX on the CPU, with no device count chosen yet."""
    # configure() writes os.environ itself: give it a copy, or the XLA_FLAGS it sets
    # would outlive the test (monkeypatch restores only what it set) and start this
    # process's JAX with several devices.
    monkeypatch.setattr(os, "environ", os.environ.copy())
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv(host_devices.ENV, raising=False)
    monkeypatch.setattr(hostmem, "jax_runs_on_cpu", lambda: True)
    return monkeypatch


@pytest.mark.parametrize("cores, expected", [(2, 2), (6, 6), (64, host_devices.MAX_DEFAULT)])
def test_default_is_one_device_per_core_up_to_the_cap(cpu_env, cores, expected):
    cpu_env.setattr(host_devices, "usable_cores", lambda: cores)
    assert host_devices.configure() == expected
    assert os.environ["XLA_FLAGS"] == f"{FLAG}={expected}"


def test_one_core_sets_nothing(cpu_env):
    cpu_env.setattr(host_devices, "usable_cores", lambda: 1)
    assert host_devices.configure() is None
    assert "XLA_FLAGS" not in os.environ


def test_env_sets_the_count_and_keeps_other_flags(cpu_env):
    cpu_env.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    cpu_env.setenv(host_devices.ENV, "3")
    assert host_devices.configure() == 3
    assert os.environ["XLA_FLAGS"] == f"--xla_cpu_enable_fast_math=false {FLAG}=3"


def test_env_one_turns_it_off(cpu_env):
    cpu_env.setattr(host_devices, "usable_cores", lambda: 4)
    cpu_env.setenv(host_devices.ENV, "1")
    assert host_devices.configure() is None
    assert "XLA_FLAGS" not in os.environ


def test_a_count_in_xla_flags_wins(cpu_env):
    cpu_env.setenv("XLA_FLAGS", f"{FLAG}=8")
    cpu_env.setenv(host_devices.ENV, "2")
    assert host_devices.configure() is None
    assert os.environ["XLA_FLAGS"] == f"{FLAG}=8"


def test_nothing_on_an_accelerator(cpu_env):
    cpu_env.setattr(hostmem, "jax_runs_on_cpu", lambda: False)
    assert host_devices.configure() is None
    assert "XLA_FLAGS" not in os.environ


@pytest.mark.parametrize("value", ["two", "0", "-1"])
def test_bad_env_value_is_a_one_line_error(cpu_env, value):
    cpu_env.setenv(host_devices.ENV, value)
    with pytest.raises(SystemExit) as e:
        host_devices.configure()
    assert str(e.value) == (f"error: {host_devices.ENV}={value!r}: expected a device count "
                            "(an integer >= 1)")
    assert "XLA_FLAGS" not in os.environ


_SCRIPT = r"""
import json
from gramr2_jax import host_devices
host_devices.configure()
import jax
from gramr2_jax import sharding
mesh = sharding.local_mesh()
print(json.dumps({"devices": jax.device_count(),
                  "mesh": None if mesh is None else dict(mesh.shape)}))
"""


@pytest.mark.parametrize("count", ["1", "2"])
def test_jax_starts_with_that_many_devices_and_local_mesh_spans_them(count):
    env = subprocess_env(**{host_devices.ENV: count})
    env.pop("XLA_FLAGS", None)
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    got = json.loads(out.stdout.splitlines()[-1])
    assert got["devices"] == int(count)
    assert got["mesh"] == (None if count == "1" else {"data": 2, "fsdp": 1, "tensor": 1})
