"""The grid engine keeps job data on this machine by default: Ray addresses are checked like the teacher's
base_url, and Ray and MLflow usage telemetry are off unless the user turned it on.

``ray`` and ``mlflow`` are replaced by stand-ins that record how they were called: nothing connects anywhere.
"""

from __future__ import annotations

import os
import socket
import sys
import types

import pytest

from rationale_sft.config.grid import ExecutorConfig
from rationale_sft.errors import InputError
from rationale_sft.grid.ray_executor import ray_submitter
from rationale_sft.grid.tracking import tracker


@pytest.fixture
def fake_ray(monkeypatch):
    """A stand-in ``ray`` module recording each ``init`` call with the telemetry setting it saw."""
    ray = types.ModuleType("ray")
    ray.inits = []
    ray.is_initialized = lambda: False
    ray.init = lambda **kw: ray.inits.append({**kw, "usage_stats": os.environ.get("RAY_USAGE_STATS_ENABLED")})
    ray.remote = lambda fn: fn
    ray.cluster_resources = lambda: {"CPU": 1.0}
    ray.shutdown = lambda: None
    monkeypatch.setitem(sys.modules, "ray", ray)
    monkeypatch.delenv("RAY_USAGE_STATS_ENABLED", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return ray


@pytest.fixture
def dns(monkeypatch):
    """``*.test`` names resolve to the addresses in the returned dict; every other name as usual."""
    real = socket.getaddrinfo
    names: dict[str, str] = {}
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: real(names.get(host, host), *a, **k))
    return names


def _join(address: str, **kw) -> None:
    with ray_submitter(ExecutorConfig(kind="ray", ray_address=address, **kw), root=None):
        pass


@pytest.mark.parametrize("address", ["192.0.2.10:6379", "ray://192.0.2.10:10001", "head.test:6379", "auto"])
def test_non_loopback_ray_address_is_refused_before_connecting(address, fake_ray, dns):
    dns["head.test"] = "192.0.2.10"
    with pytest.raises(InputError, match=r"executor\.allow_remote_phi=true") as err:
        _join(address)
    assert "ray_address" in str(err.value) and "subject ids" in str(err.value)
    assert fake_ray.inits == []


def test_remote_ray_address_with_the_opt_in_is_passed_as_given(fake_ray, dns):
    dns["head.test"] = "192.0.2.10"
    _join("head.test:6379", allow_remote_phi=True)
    _join("auto", allow_remote_phi=True)
    assert [i["address"] for i in fake_ray.inits] == ["head.test:6379", "auto"]


def test_loopback_ray_address_joins_the_checked_address(fake_ray, dns):
    dns["head.test"] = "127.0.0.3"  # checked once; Ray gets the address, never the name to look up again
    _join("head.test:6379")
    _join("ray://127.0.0.1:10001")
    _join("")  # a private instance of our own, even when RAY_ADDRESS or a running cluster is around
    _join("localhost:6379")
    assert [i["address"] for i in fake_ray.inits] == ["127.0.0.3:6379", "ray://127.0.0.1:10001", "local",
                                                      "127.0.0.1:6379"]


def test_ray_usage_stats_are_off_unless_the_user_turned_them_on(fake_ray, monkeypatch):
    _join("127.0.0.1:6379")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "1")
    _join("127.0.0.1:6379")
    assert [i["usage_stats"] for i in fake_ray.inits] == ["0", "1"]


def test_mlflow_telemetry_is_off_unless_the_user_turned_it_on(monkeypatch, tmp_path):
    seen = []

    class Client:
        def __init__(self, tracking_uri):
            seen.append(os.environ.get("MLFLOW_DISABLE_TELEMETRY"))

        def get_experiment_by_name(self, name):
            return types.SimpleNamespace(experiment_id="1")

    mlflow = types.ModuleType("mlflow")
    mlflow.tracking = types.ModuleType("mlflow.tracking")
    mlflow.tracking.MlflowClient = Client
    monkeypatch.setitem(sys.modules, "mlflow", mlflow)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", mlflow.tracking)
    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    cfg = ExecutorConfig(mlflow_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    with tracker(cfg, tmp_path):
        pass
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")
    with tracker(cfg, tmp_path):
        pass
    assert seen == ["true", "false"]
