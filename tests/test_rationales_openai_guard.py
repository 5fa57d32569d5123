"""The openai backend's privacy guard holds for the connection itself: redirects, changing DNS, huge replies.

Every server here listens on 127.0.0.x. Names that should lead off this machine are made up (``*.test``)
and resolved by a patched ``socket.getaddrinfo``; a patched ``socket.socket.connect`` records every
connection attempt and refuses any that is not loopback, so nothing ever leaves the machine even when the
guard fails.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import polars as pl
import pytest
from openai_server import FaultServer, write_examples

from rationale_sft.config import build
from rationale_sft.config.teacher import TeacherConfig
from rationale_sft.errors import InputError
from rationale_sft.rationales.generate import generate
from rationale_sft.rundir import read_json

OFF_BOX = "192.0.2.10"  # TEST-NET-1: never routed; and the patched connect refuses it anyway


@pytest.fixture
def net(monkeypatch):
    """Fake DNS for ``*.test`` names (``net.names[name]``: answers given in turn, the last one repeated)
    and a record of every connection attempt (``net.connects``); non-loopback attempts are refused."""
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    class Net:
        names: dict[str, list[str]] = {}
        connects: list[str] = []

        @staticmethod
        def off_box() -> list[str]:
            return [a for a in Net.connects if not ipaddress.ip_address(a).is_loopback]

    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, str) and host in Net.names:
            answers = Net.names[host]
            host = answers.pop(0) if len(answers) > 1 else answers[0]
        return real_getaddrinfo(host, port, *args, **kwargs)

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            Net.connects.append(address[0])
            if not ipaddress.ip_address(address[0]).is_loopback:
                raise ConnectionRefusedError(f"test: refused a connection to {address[0]}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return Net


class Recorder:
    """A server on ``host`` answering every request with ``status`` (and ``Location``), recording each one."""

    def __init__(self, host: str, status: int = 200, location: str = ""):
        self.status, self.location = status, location
        self.requests: list[tuple[str, str | None]] = []
        self.httpd = ThreadingHTTPServer((host, 0), self._handler())
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                server.requests.append((self.command, self.headers.get("Authorization")))
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self.send_response(server.status)
                if server.location:
                    self.send_header("Location", server.location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = _answer  # noqa: N815 (http.server naming)

            def log_message(self, *args):
                pass

        return Handler


def _cfg(base_url: str, *overrides: str) -> TeacherConfig:
    return build(TeacherConfig, {"backend": "openai", "model": "m", "base_url": base_url, "backoff_s": 0.01,
                                 "timeout_s": 5, "max_retries": 2, "styles": ["freeform"], "allow_failures": True,
                                 "api_key_env": "TEACHER_KEY"}, list(overrides))


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_to_another_loopback_address_is_not_followed(status, tmp_path, monkeypatch, net):
    monkeypatch.setenv("TEACHER_KEY", "sekret")
    examples = write_examples(tmp_path / "examples.parquet", ["ok", "ok"])
    target = Recorder("127.0.0.2")
    redirector = Recorder("127.0.0.1", status, f"http://127.0.0.2:{target.port}/v1/chat/completions")
    try:
        generate(_cfg(f"http://127.0.0.1:{redirector.port}/v1"), examples, tmp_path / "out")
    finally:
        target.close()
        redirector.close()
    assert target.requests == [] and "127.0.0.2" not in net.connects
    assert len(redirector.requests) == 2  # one attempt per item: a redirect is not worth retrying
    failures = read_json(tmp_path / "out" / "failures.json")
    assert len(failures) == 2 and all(f"HTTP {status}" in f["error"] and "redirect" in f["error"] and
                                      f"127.0.0.2:{target.port}" in f["error"] for f in failures)


def test_redirect_to_a_name_that_resolves_off_box_sends_nothing_there(tmp_path, monkeypatch, net):
    monkeypatch.setenv("TEACHER_KEY", "sekret")
    net.names["elsewhere.test"] = [OFF_BOX]
    examples = write_examples(tmp_path / "examples.parquet", ["ok"] * 3)
    redirector = Recorder("127.0.0.1", 302, "http://elsewhere.test:8000/v1/chat/completions")
    try:
        generate(_cfg(f"http://127.0.0.1:{redirector.port}/v1"), examples, tmp_path / "out")
    finally:
        redirector.close()
    assert net.off_box() == [] and set(net.connects) == {"127.0.0.1"}
    assert len(read_json(tmp_path / "out" / "failures.json")) == 3


def test_dns_answer_that_changes_after_the_check_cannot_redirect(tmp_path, net):
    with FaultServer() as server:
        port = server.httpd.server_address[1]
        net.names["teacher.test"] = ["127.0.0.1", OFF_BOX]  # checked once; any later lookup goes off-box
        cfg = build(TeacherConfig, {"backend": "openai", "model": "m", "base_url": f"http://teacher.test:{port}/v1",
                                    "backoff_s": 0.01, "max_retries": 1, "styles": ["freeform"]})
        generate(cfg, write_examples(tmp_path / "examples.parquet", ["ok"] * 4), tmp_path / "out")
    assert net.off_box() == [] and net.connects == ["127.0.0.1"] * 4
    assert sum(server.calls.values()) == 4
    assert pl.read_parquet(tmp_path / "out" / "rationales.parquet").height == 4


def test_localhost_reaches_a_server_on_127_0_0_1(tmp_path, net):
    with FaultServer() as server:
        cfg = build(TeacherConfig, {"backend": "openai", "model": "m", "styles": ["freeform"],
                                    "base_url": f"http://localhost:{server.httpd.server_address[1]}/v1"})
        generate(cfg, write_examples(tmp_path / "examples.parquet", ["ok"]), tmp_path / "out")
    assert net.connects[-1] == "127.0.0.1" and sum(server.calls.values()) == 1  # after ::1, where resolved


def _self_signed(tmp_path, name: str) -> tuple[str, str]:
    cert, key = str(tmp_path / f"{name}.pem"), str(tmp_path / f"{name}.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}"],
                   check=True, capture_output=True)
    return cert, key


@pytest.mark.parametrize("cert_name", ["teacher.test", "other.test"])
def test_https_pins_the_address_but_verifies_the_name(cert_name, tmp_path, monkeypatch, net):
    cert, key = _self_signed(tmp_path, cert_name)
    monkeypatch.setenv("SSL_CERT_FILE", cert)  # the client trusts this certificate alone
    server_names = []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.sni_callback = lambda sock, name, _: server_names.append(name)
    with FaultServer() as server:
        server.httpd.socket = ctx.wrap_socket(server.httpd.socket, server_side=True)
        net.names["teacher.test"] = ["127.0.0.1", OFF_BOX]
        cfg = build(TeacherConfig, {"backend": "openai", "model": "m", "styles": ["freeform"], "max_retries": 0,
                                    "allow_failures": True,
                                    "base_url": f"https://teacher.test:{server.httpd.server_address[1]}/v1"})
        generate(cfg, write_examples(tmp_path / "examples.parquet", ["ok"]), tmp_path / "out")
    assert net.off_box() == [] and server_names == ["teacher.test"]
    failures = read_json(tmp_path / "out" / "failures.json")
    if cert_name == "teacher.test":
        assert failures == [] and sum(server.calls.values()) == 1
    else:  # a certificate for another name is refused, whatever address the connection went to
        assert "CERTIFICATE_VERIFY_FAILED" in failures[0]["error"] and sum(server.calls.values()) == 0


def test_name_resolving_to_any_non_loopback_address_is_refused(tmp_path, net):
    net.names["mixed.test"] = [OFF_BOX]
    cfg = build(TeacherConfig, {"backend": "openai", "model": "m", "base_url": "http://mixed.test:8000/v1"})
    with pytest.raises(InputError, match=r"'mixed.test' .*192\.0\.2\.10.*allow_remote_phi=true"):
        generate(cfg, write_examples(tmp_path / "examples.parquet", ["ok"]), tmp_path / "out")
    assert net.connects == []


class HugeReply:
    """A server answering with a ``size``-byte body, with or without Content-Length; counts bytes it got out."""

    def __init__(self, size: int, content_length: bool):
        self.size, self.content_length = size, content_length
        self.sent = 0
        self.finished = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def _handler(self):
        server = self
        chunk = b" " * 65536

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                if server.content_length:
                    self.send_header("Content-Length", str(server.size))
                self.end_headers()  # HTTP/1.0 without a length: the body ends when the server closes
                try:
                    self.wfile.write(b'{"choices": [{"message": {"content": "')
                    while server.sent < server.size:
                        self.wfile.write(chunk)
                        server.sent += len(chunk)
                except OSError:  # the client hung up
                    pass
                finally:
                    server.finished.set()

            def log_message(self, *args):
                pass

        return Handler


@pytest.mark.parametrize("content_length", [True, False])
def test_huge_reply_is_refused_without_reading_it_all(content_length, tmp_path):
    size = 200 * 2**20
    server = HugeReply(size, content_length)
    base_url = f"http://127.0.0.1:{server.httpd.server_address[1]}/v1"
    cfg = build(TeacherConfig, {"backend": "openai", "model": "m", "base_url": base_url, "max_retries": 2,
                                "styles": ["freeform"], "allow_failures": True, "max_reply_bytes": 100_000})
    try:
        generate(cfg, write_examples(tmp_path / "examples.parquet", ["ok"]), tmp_path / "out")
        assert server.finished.wait(30)
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
    assert server.sent < size // 4  # what the socket buffers took, not the body
    [failure] = read_json(tmp_path / "out" / "failures.json")
    assert failure["attempts"] == 1 and "max_reply_bytes=100000" in failure["error"]
    assert failure["error"].startswith("subject 1, freeform: ")


def test_reply_cap_is_a_checked_setting():
    assert TeacherConfig().max_reply_bytes == 524_288
    with pytest.raises(Exception, match="max_reply_bytes must be >= 1"):
        build(TeacherConfig, {}, ["max_reply_bytes=0"])


def test_reply_within_the_cap_is_accepted(tmp_path):
    with FaultServer() as server:
        cfg = build(TeacherConfig, {"backend": "openai", "model": "m", "base_url": server.base_url,
                                    "styles": ["freeform"], "max_reply_bytes": 1000})
        generate(cfg, write_examples(tmp_path / "examples.parquet", ["ok"]), tmp_path / "out")
    assert pl.read_parquet(tmp_path / "out" / "rationales.parquet").height == 1
    assert json.loads((tmp_path / "out" / "failures.json").read_text()) == []
