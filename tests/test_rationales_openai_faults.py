"""The openai teacher backend against a fault-injecting OpenAI-compatible server on 127.0.0.1.

Each prompt carries a tag ``[behaviour]`` that tells the server how to answer that subject: ``ok``,
``flaky`` (two 503s, then ok), ``slow`` (first attempt slower than the client timeout), ``malformed``
(invalid JSON), ``nochoices``, ``noconclusion``, ``badrequest`` (HTTP 400), ``contradict`` (a conditioned
conclusion opposite to the label).
"""

from __future__ import annotations

from collections import Counter

import polars as pl
import pytest
from openai_server import FaultServer, write_examples

from rationale_sft.config import build
from rationale_sft.config.teacher import TeacherConfig
from rationale_sft.errors import InputError
from rationale_sft.rationales.generate import generate
from rationale_sft.rundir import is_done, read_json


def _cfg(server: FaultServer, *overrides: str) -> TeacherConfig:
    return build(TeacherConfig, {"backend": "openai", "model": "fault-server", "base_url": server.base_url,
                                 "backoff_s": 0.01, "timeout_s": 0.5, "max_retries": 3, "styles": ["freeform"]},
                 list(overrides))


def test_retries_recover_and_failures_are_reported(tmp_path):
    tags = ["ok", "flaky", "slow", "malformed", "nochoices", "noconclusion", "badrequest", "contradict"]
    examples = write_examples(tmp_path / "examples.parquet", tags)
    with FaultServer() as server:
        generate(_cfg(server, "allow_failures=true"), examples, tmp_path / "out")
    out = pl.read_parquet(tmp_path / "out" / "rationales.parquet")
    assert sorted(out["subject_id"].to_list()) == [1, 2, 3]
    assert out.filter(pl.col("subject_id") == 1)["conclusion"].item() == "Yes"  # label True, conditioned
    assert out.filter(pl.col("subject_id") == 2)["conclusion"].item() == "No"
    failures = {f["subject_id"]: f for f in read_json(tmp_path / "out" / "failures.json")}
    assert sorted(failures) == [4, 5, 6, 7, 8]
    assert {s: failures[s]["attempts"] for s in failures} == {4: 4, 5: 4, 6: 4, 7: 1, 8: 4}
    assert "malformed JSON" in failures[4]["error"] and "no choices" in failures[5]["error"]
    assert "no conclusion" in failures[6]["error"] and "HTTP 400" in failures[7]["error"]
    assert "although it was told" in failures[8]["error"]
    assert server.calls["2"] == 3 and server.calls["3"] == 2 and server.calls["7"] == 1
    assert is_done(tmp_path / "out")


def test_retry_after_is_honoured(tmp_path):
    examples = write_examples(tmp_path / "examples.parquet", ["ratelimited"])
    with FaultServer() as server:
        generate(_cfg(server), examples, tmp_path / "out")
    first, second = server.times["1"]
    assert server.calls["1"] == 2 and second - first >= 0.95  # Retry-After: 1, backoff_s is only 0.01
    assert pl.read_parquet(tmp_path / "out" / "rationales.parquet").height == 1


def test_failures_block_done_then_rerun_only_retries_them(tmp_path):
    examples = write_examples(tmp_path / "examples.parquet", ["ok", "ok", "noconclusion", "ok"])
    with FaultServer() as server:
        with pytest.raises(InputError, match=r"1 of 4 items failed .*failures.json"):
            generate(_cfg(server, "max_retries=1"), examples, tmp_path / "out")
        assert not is_done(tmp_path / "out") and not (tmp_path / "out" / "rationales.parquet").exists()
        assert sum(server.calls.values()) == 5
        generate(_cfg(server, "max_retries=0", "allow_failures=true"), examples, tmp_path / "out")
        assert server.calls == Counter({"1": 1, "2": 1, "3": 3, "4": 1})  # finished items came from the cache
    assert pl.read_parquet(tmp_path / "out" / "rationales.parquet").height == 3


def test_concurrency_bound_rate_limit_and_api_key(tmp_path, monkeypatch):
    examples = write_examples(tmp_path / "examples.parquet", ["ok"] * 12)
    monkeypatch.setenv("TEACHER_KEY", "sekret")
    with FaultServer(delay_s=0.1) as server:
        generate(_cfg(server, "concurrency=3", "api_key_env=TEACHER_KEY"), examples, tmp_path / "a")
        assert 2 <= server.max_in_flight <= 3
        assert set(server.auth) == {"Bearer sekret"}
    with FaultServer() as server:
        generate(_cfg(server, "concurrency=4", "rps=20"), examples, tmp_path / "b")
        span = server.starts[-1] - server.starts[0]
        assert span >= 11 / 20 * 0.9  # 12 request starts spaced by 1/rps
    a, b = (pl.read_parquet(tmp_path / d / "rationales.parquet") for d in "ab")
    assert a.equals(b) and a.height == 12


def test_missing_api_key_and_remote_host_are_refused_before_sending(tmp_path, monkeypatch):
    examples = write_examples(tmp_path / "examples.parquet", ["ok"])
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with FaultServer() as server:
        with pytest.raises(InputError, match="NO_SUCH_KEY_VAR"):
            generate(_cfg(server, "api_key_env=NO_SUCH_KEY_VAR"), examples, tmp_path / "a")
        remote = build(TeacherConfig, {"backend": "openai", "model": "m", "base_url": "http://192.0.2.10:8000/v1"})
        with pytest.raises(InputError, match="not a loopback address"):
            generate(remote, examples, tmp_path / "b")
        assert sum(server.calls.values()) == 0


def test_cache_is_keyed_by_spec_version(tmp_path, monkeypatch, capsys):
    import rationale_sft.rationales.generate as gen

    examples = write_examples(tmp_path / "examples.parquet", ["ok", "ok"])
    with FaultServer() as server:
        cfg = _cfg(server, f"cache_dir={tmp_path / 'cache'}")
        generate(cfg, examples, tmp_path / "a")
        monkeypatch.setattr(gen, "SPEC_VERSION", "999")
        generate(cfg, examples, tmp_path / "b")
        assert server.calls == Counter({"1": 2, "2": 2})
    assert "under spec version(s) 1, not the current 999" in capsys.readouterr().err.replace("\n", " ")
    assert pl.read_parquet(tmp_path / "b" / "rationales.parquet")["spec_version"].to_list() == ["999", "999"]
