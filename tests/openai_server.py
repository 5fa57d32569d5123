"""A fault-injecting OpenAI-compatible server on 127.0.0.1 and the examples whose prompts tell it how to answer."""

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

from rationale_sft.rundir import hash_text


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
