"""The openai teacher backend against a fault-injecting OpenAI-compatible server on 127.0.0.1.

Each prompt carries a tag ``[behaviour]`` that tells the server how to answer that subject: ``ok``,
``flaky`` (two 503s, then ok), ``slow`` (first attempt slower than the client timeout), ``malformed``
(invalid JSON), ``nochoices``, ``noconclusion``, ``badrequest`` (HTTP 400), ``contradict`` (a conditioned
conclusion opposite to the label).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest

from rationale_sft.config import build
from rationale_sft.config.teacher import TeacherConfig
from rationale_sft.errors import InputError
from rationale_sft.rationales.generate import generate
from rationale_sft.rundir import hash_text, is_done, read_json


def write_examples(path: Path, tags: list[str], splits: list[str] | None = None) -> Path:
    """A real examples.parquet with one subject per tag (labels alternate)."""
    prompts = [f"Subject {i + 1} [{tag}]\nAge: {61 + i} years\nQuestion: Will this person develop dementia?\nAnswer:"
               for i, tag in enumerate(tags)]
    pl.DataFrame({
        "subject_id": pl.Series(range(1, len(tags) + 1), dtype=pl.Int64),
        "prediction_time": pl.Series([datetime(2010, 1, 1 + i % 28) for i in range(len(tags))],
                                     dtype=pl.Datetime("us")),
        "split": splits or ["train"] * len(tags),
        "label": [i % 2 == 0 for i in range(len(tags))],
        "prompt": prompts,
        "prompt_hash": [hash_text(p) for p in prompts],
    }).write_parquet(path)
    return path


class FaultServer:
    """A threaded chat-completions server whose answers depend on the tag in the prompt."""

    def __init__(self, delay_s: float = 0.0, slow_s: float = 1.0):
        self.delay_s, self.slow_s = delay_s, slow_s
        self.calls: Counter = Counter()
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        self.starts: list[float] = []
        self.auth: list[str | None] = []
        self.times: dict[str, list[float]] = {}
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, body: dict) -> tuple[int, bytes, float]:
        """(status, payload, seconds to wait first) for one request."""
        system, user = body["messages"][0]["content"], body["messages"][1]["content"]
        tag = re.search(r"\[(\w+)\]", user).group(1)
        subject = re.search(r"Subject (\d+)", user).group(1)
        with self.lock:
            self.calls[subject] += 1
            n = self.calls[subject]
        positive = "this person was diagnosed" in system or ("this person was not" not in system
                                                             and int(subject) % 3 == 0)
        if tag == "contradict":
            positive = not positive
        text = (f"Subject {subject} is {60 + int(subject)} years old; age is the main factor.\n"
                f"Conclusion: {'likely' if positive else 'unlikely'}\nRisk: 0.{10 + int(subject)}")
        ok = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}],
                         "usage": {"completion_tokens": 20}}).encode()
        return {
            "ok": (200, ok, self.delay_s),
            "contradict": (200, ok, 0.0),
            "flaky": (503, b'{"error": "busy"}', 0.0) if n <= 2 else (200, ok, 0.0),
            "slow": (200, ok, self.slow_s if n == 1 else 0.0),
            "malformed": (200, b'{"choices": [', 0.0),
            "nochoices": (200, b'{"object": "chat.completion"}', 0.0),
            "noconclusion": (200, json.dumps({"choices": [{"message": {"content": "Age matters."}}]}).encode(), 0.0),
            "badrequest": (400, b'{"error": "bad request"}', 0.0),
            "ratelimited": (429, b'{"error": "slow down"}', 0.0) if n == 1 else (200, ok, 0.0),
        }[tag]

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    server.starts.append(time.monotonic())
                    server.times.setdefault(re.search(r"Subject (\d+)", body["messages"][1]["content"]).group(1),
                                            []).append(time.monotonic())
                    server.auth.append(self.headers.get("Authorization"))
                try:
                    status, payload, wait = server.answer(body)
                    time.sleep(wait)
                    self.send_response(status)
                    if status == 429:
                        self.send_header("Retry-After", "1")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def log_message(self, *args):
                pass

        return Handler


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
