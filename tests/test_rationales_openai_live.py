"""The openai backend against a real OpenAI-compatible server on 127.0.0.1 serving a real tiny transformers model.

``transformers serve`` needs the ``openai`` package, which the pinned environment does not install, so the
server is the minimal one below (stdlib http.server + transformers, greedy decoding), started as a
subprocess on a free port: ``python tests/test_rationales_openai_live.py MODEL_DIR PORT_FILE``. When ``transformers
serve`` is available it is exercised too.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from tiny_chat_model import build_tiny_model
from openai_server import write_examples

from rationale_sft.config import build
from rationale_sft.config.teacher import TeacherConfig
from rationale_sft.rationales.backends.hf import generate_texts, load
from rationale_sft.rationales.generate import generate
from rationale_sft.rationales.specs import teacher_messages
from rationale_sft.rundir import read_json


def serve(model_dir: str, port_file: str) -> None:
    """Serve POST /v1/chat/completions and GET /v1/models for one local model until killed."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()

    def complete(body: dict) -> dict:
        prompt = tok.apply_chat_template(body["messages"], tokenize=False, add_generation_prompt=True)
        ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=int(body.get("max_tokens") or 16), do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        new = out[0, ids["input_ids"].shape[1]:]
        return {"id": f"chatcmpl-{time.time_ns()}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model"), "choices": [{"index": 0, "finish_reason": "length", "message": {
                    "role": "assistant", "content": tok.decode(new, skip_special_tokens=True)}}],
                "usage": {"prompt_tokens": ids["input_ids"].shape[1], "completion_tokens": len(new)}}

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, obj: dict) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            self._send(200, {"object": "list", "data": [{"id": "tiny", "object": "model"}]})

        def do_POST(self):  # noqa: N802
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._send(404, {"error": {"message": f"no route {self.path}"}})
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self._send(200, complete(body))

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    Path(port_file).write_text(str(httpd.server_address[1]))
    httpd.serve_forever()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(proc: subprocess.Popen, url: str, timeout: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"server at {url} not ready after {timeout} s")


def _start(kind: str, model_dir: Path, tmp: Path) -> tuple[subprocess.Popen, str]:
    if kind == "minimal":
        port_file = tmp / "port"
        proc = subprocess.Popen([sys.executable, __file__, str(model_dir), str(port_file)], stderr=subprocess.PIPE,
                                text=True)
        deadline = time.monotonic() + 120
        while not port_file.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        port = int(port_file.read_text()) if port_file.exists() else 0
    else:
        port = _free_port()
        cli = Path(sys.executable).with_name("transformers")
        proc = subprocess.Popen([str(cli), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
                                 "--device", "cpu"], stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}/v1"
    _wait_ready(proc, base + "/models")
    return proc, base


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["minimal", "transformers-serve"])
def test_real_model_server_round_trip(kind, tmp_path):
    model_dir = build_tiny_model(tmp_path / "model")
    examples = write_examples(tmp_path / "examples.parquet", ["ok", "ok"])
    proc, base = _start(kind, model_dir, tmp_path)
    try:
        cfg = build(TeacherConfig, {"backend": "openai", "model": str(model_dir), "base_url": base,
                                    "max_new_tokens": 6, "max_retries": 1, "backoff_s": 0.01, "concurrency": 2,
                                    "styles": ["freeform"], "allow_failures": True})
        generate(cfg, examples, tmp_path / "out")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    failures = {f["subject_id"]: f for f in read_json(tmp_path / "out" / "failures.json")}
    # a random model writes no conclusion line, so both items fail after a retry, with the model's real text
    assert sorted(failures) == [1, 2] and all(f["attempts"] == 2 for f in failures.values())
    model, tok = load(str(model_dir))
    for sid, item in failures.items():
        prompt = f"Subject {sid} [ok]\nAge: {60 + sid} years\nQuestion: Will this person develop dementia?\nAnswer:"
        messages = teacher_messages(prompt, "freeform", "conditioned", sid % 2 == 1)
        local = generate_texts(model, tok, [messages], 6, 0.0, seed=0)[0][0]
        assert item["reply"] == local and local.strip()  # the server ran the same greedy decode


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
