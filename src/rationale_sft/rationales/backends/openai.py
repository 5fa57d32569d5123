"""Teacher backend for any OpenAI-compatible chat-completions server (vLLM, llama.cpp, Ollama, hosted APIs).

Requests run on a bounded thread pool under a shared requests-per-second limit. Timeouts, connection
errors, HTTP 429/5xx, malformed JSON, replies without ``choices`` and replies that ``specs.parse_reply``
rejects are retried with exponential backoff and jitter (at least the server's ``Retry-After``, up to 60 s);
other 4xx answers fail the item at once. Every
failure is reported to the driver with its last error, never dropped.

Patient text leaves this machine only when the config says ``allow_remote_phi: true``: the host of
``base_url`` is resolved once, before anything is sent, every address must be loopback otherwise, and every
request connects to those checked addresses (``rationale_sft.privacy``), never through a new lookup.
Redirects are not followed (the guard and the API key belong to ``base_url``), replies larger than
``max_reply_bytes`` are refused unread, and proxy environment variables are ignored.

>>> check_endpoint("http://127.0.0.1:8000/v1", allow_remote_phi=False)
Endpoint(scheme='http', host='127.0.0.1', port=8000, path='/v1', addresses=('127.0.0.1',))
>>> check_endpoint("https://[::1]/v1/chat/completions?x=1", allow_remote_phi=False).port
443
>>> check_endpoint("http://10.1.2.3:8000/v1", allow_remote_phi=False)
Traceback (most recent call last):
...
rationale_sft.errors.InputError: base_url host '10.1.2.3' is not a loopback address (127.0.0.0/8, ::1, localhost); patient text is only sent there with allow_remote_phi=true, set it only for a server you are permitted to send patient data to
>>> check_endpoint("ftp://127.0.0.1/v1", allow_remote_phi=False)
Traceback (most recent call last):
...
rationale_sft.errors.InputError: base_url 'ftp://127.0.0.1/v1' must be an http:// or https:// URL, e.g. http://127.0.0.1:8000/v1
>>> check_endpoint("http://127.0.0.1:99999/v1", allow_remote_phi=False)
Traceback (most recent call last):
...
rationale_sft.errors.InputError: base_url 'http://127.0.0.1:99999/v1' must be an http:// or https:// URL, e.g. http://127.0.0.1:8000/v1
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from rationale_sft.config.teacher import TeacherConfig
from rationale_sft.errors import InputError
from rationale_sft.privacy import LOOPBACK, checked_addresses, pinned_connection
from rationale_sft.rationales.generate import Emit, Item, Outcome, parse_item_reply
from rationale_sft.rationales.specs import teacher_messages
from rationale_sft.seeding import derive_seed, rng

MAX_RETRY_AFTER_S = 60.0
"""Longest server-requested wait honoured before a retry."""


class RetryableError(Exception):
    """A failure worth another attempt (timeout, connection, 429/5xx, malformed or unusable reply)."""

    def __init__(self, message: str, retry_after: float = 0.0):
        super().__init__(message)
        self.retry_after = retry_after
        "Seconds the server asked us to wait (its Retry-After header), 0 when it did not say."


class FatalError(Exception):
    """A failure another attempt will not fix (HTTP 3xx, 4xx other than 408/429, a reply over the size cap)."""


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: the URL's parts and the addresses the privacy guard checked for its host."""

    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]

    @property
    def url(self) -> str:
        """The URL, for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"


def run(cfg: TeacherConfig, items: list[Item], emit: Emit, **_: object) -> dict:
    """Generate every item through the server, emitting outcomes in the caller's thread as they finish."""
    endpoint = check_endpoint(cfg.base_url.rstrip("/") + "/chat/completions", cfg.allow_remote_phi)
    headers = {"Content-Type": "application/json", **_auth_header(cfg)}
    limiter = RateLimiter(cfg.rps)
    pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="teacher")
    try:
        futures = [pool.submit(complete_item, cfg, item, endpoint, headers, limiter) for item in items]
        for fut in as_completed(futures):
            emit(fut.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return {"requests": limiter.count}


def complete_item(cfg: TeacherConfig, item: Item, endpoint: Endpoint, headers: dict,
                  limiter: RateLimiter) -> Outcome:
    """One item: request, validate and parse, retrying retryable failures with backoff."""
    body = request_body(cfg, item)
    error, wait_at_least = "no attempt made", 0.0
    for attempt in range(cfg.max_retries + 1):
        if attempt:
            time.sleep(max(backoff_delay(cfg, item.key, attempt), wait_at_least))
        limiter.wait()
        raw = None
        try:
            reply = post_json(endpoint, body, headers, cfg.timeout_s, cfg.max_reply_bytes)
            raw, n_tokens = reply_text(reply)
            return Outcome(item, parse_item_reply(item, raw), raw, None, attempt + 1, n_tokens, body.get("seed"))
        except FatalError as exc:
            return Outcome(item, None, raw, f"{_name(item)}: {exc}", attempt + 1)
        except (RetryableError, InputError) as exc:
            error, wait_at_least = str(exc), min(getattr(exc, "retry_after", 0.0), MAX_RETRY_AFTER_S)
    return Outcome(item, None, raw, f"{_name(item)}: failed after {cfg.max_retries + 1} attempts: {error}",
                   cfg.max_retries + 1)


def _name(item: Item) -> str:
    return f"subject {item.subject_id}, {item.style}"


def request_body(cfg: TeacherConfig, item: Item) -> dict:
    """The chat-completions request for one item (a per-item seed when sampling)."""
    body = {"model": cfg.model, "max_tokens": cfg.max_new_tokens, "temperature": cfg.temperature,
            "messages": teacher_messages(item.prompt, item.style, item.mode, item.teacher_label)}
    if cfg.temperature > 0:
        body["seed"] = derive_seed(cfg.seed, f"teacher/{item.key}") % (2**31)
    return body


def post_json(endpoint: Endpoint, body: dict, headers: dict, timeout_s: float, max_bytes: int) -> object:
    """POST JSON to the checked addresses and decode the JSON answer, classifying every failure as retryable
    or fatal; a redirect is never followed and at most ``max_bytes`` of the reply are read."""
    url = endpoint.url
    conn = pinned_connection(endpoint.scheme, endpoint.host, endpoint.port, endpoint.addresses, timeout_s)
    try:
        conn.request("POST", endpoint.path, json.dumps(body).encode(), headers)
        with conn.getresponse() as resp:  # closing it hangs up on a server still sending
            if resp.status >= 300:
                raise _status_error(url, resp)
            data = read_capped(resp, max_bytes, url)
    except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
        raise RetryableError(f"request to {url} failed: {exc}") from None
    finally:
        conn.close()
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RetryableError(f"malformed JSON reply from {url}: {data[:80]!r}") from None


def _status_error(url: str, resp: http.client.HTTPResponse) -> Exception:
    """The error for a non-2xx answer: retryable for 408, 429 and 5xx, fatal otherwise (redirects included)."""
    if 300 <= resp.status < 400:
        target = urljoin(url, resp.getheader("Location") or "")
        return FatalError(f"HTTP {resp.status} from {url} redirects to {target}; redirects are not followed (the "
                          "privacy guard and the API key apply to base_url only): set base_url to the server's "
                          "own address")
    detail = resp.read(200).decode("utf-8", "replace")
    if resp.status in (408, 429) or resp.status >= 500:
        return RetryableError(f"HTTP {resp.status} from {url}: {detail}", _retry_after(resp.headers))
    return FatalError(f"HTTP {resp.status} from {url}: {detail}")


def read_capped(resp: http.client.HTTPResponse, max_bytes: int, url: str) -> bytes:
    """The reply body, read in bounded chunks; refused (unread) once it is known to exceed ``max_bytes``."""
    length = resp.getheader("Content-Length") or ""
    data = bytearray()
    while len(data) <= max_bytes and not (length.isdigit() and int(length) > max_bytes):
        chunk = resp.read(min(65536, max_bytes + 1 - len(data)))
        if not chunk:
            return bytes(data)
        data += chunk
    raise FatalError(f"reply from {url} is larger than max_reply_bytes={max_bytes} (Content-Length: "
                     f"{length or 'not given'}); the server is misbehaving, or raise teacher.max_reply_bytes")


def _retry_after(headers) -> float:
    """Seconds from a Retry-After header in its delta-seconds form (an HTTP date is ignored).

    >>> _retry_after({"Retry-After": "2"}), _retry_after({}), _retry_after({"Retry-After": "soon"})
    (2.0, 0.0, 0.0)
    """
    try:
        return max(0.0, float((headers or {}).get("Retry-After") or 0))
    except ValueError:
        return 0.0


def reply_text(reply: object) -> tuple[str, int]:
    """The assistant text and completion-token count of a chat-completions reply.

    >>> reply_text({"choices": [{"message": {"content": "Hi"}}], "usage": {"completion_tokens": 3}})
    ('Hi', 3)
    >>> reply_text({"error": "overloaded"})
    Traceback (most recent call last):
    ...
    rationale_sft.rationales.backends.openai.RetryableError: reply has no choices[0].message.content: {'error': 'overloaded'}
    """
    try:
        text = reply["choices"][0]["message"]["content"]
        if not isinstance(text, str):
            raise TypeError(text)
    except (KeyError, IndexError, TypeError):
        raise RetryableError(f"reply has no choices[0].message.content: {str(reply)[:120]}") from None
    usage = reply.get("usage") or {}
    return text, int(usage.get("completion_tokens") or 0)


def backoff_delay(cfg: TeacherConfig, key: str, attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, ...): backoff_s * 2^(attempt-1), jittered +-50%.

    >>> from rationale_sft.config.teacher import TeacherConfig
    >>> d = [backoff_delay(TeacherConfig(backoff_s=1.0), "k", a) for a in (1, 2, 3)]
    >>> 0.5 <= d[0] <= 1.5 and 1.0 <= d[1] <= 3.0 and 2.0 <= d[2] <= 6.0
    True
    """
    jitter = rng(cfg.seed, f"backoff/{key}/{attempt}").uniform(0.5, 1.5)
    return cfg.backoff_s * 2 ** (attempt - 1) * float(jitter)


class RateLimiter:
    """At most ``rps`` request starts per second across threads (0: unlimited); counts requests."""

    def __init__(self, rps: float):
        self.interval = 1.0 / rps if rps > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self.count = 0

    def wait(self) -> None:
        """Block until this thread may start a request."""
        with self._lock:
            self.count += 1
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


def check_endpoint(url: str, allow_remote_phi: bool) -> Endpoint:
    """The endpoint of an http(s) URL with its host's addresses, all loopback unless remote patient data is
    allowed; every request then goes to these addresses only."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a port that is not a number in 0-65535
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise InputError(f"base_url {url!r} must be an http:// or https:// URL, e.g. http://127.0.0.1:8000/v1")
    addresses = checked_addresses(parts.hostname, port, allow_remote_phi,
                                  lambda remote: _refusal(parts.hostname, remote))
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Endpoint(parts.scheme, parts.hostname, port, path, tuple(addresses))


def _refusal(host: str, remote: list[str]) -> str:
    resolved = "" if remote == [host] else f" (it resolves to {', '.join(remote)})"
    return (f"base_url host {host!r} is not a {LOOPBACK}{resolved}; patient text is only sent there with "
            "allow_remote_phi=true, set it only for a server you are permitted to send patient data to")


def _auth_header(cfg: TeacherConfig) -> dict:
    if not cfg.api_key_env:
        return {}
    key = os.environ.get(cfg.api_key_env)
    if not key:
        raise InputError(f"api_key_env names {cfg.api_key_env!r}, but that environment variable is not set; "
                         "export it, or set api_key_env=null for a server without a key")
    return {"Authorization": f"Bearer {key}"}
