"""Grid engine on a real local Ray cluster (``ray start --head``): same results and failures as local."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from test_grid_support import HERE, calls, diamond_grid

from rationale_sft.config.grid import ExecutorConfig
from rationale_sft.grid import collect, execute, make_job

pytestmark = pytest.mark.slow


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def session_members(sid: int) -> list[int]:
    """Pids of live processes in a session (field 6 of /proc/PID/stat): Ray workers get their own
    process groups but stay in the session of the ``ray start`` process that we made its leader."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def drain(proc: subprocess.Popen, lines: list[str]) -> None:
    for line in proc.stdout:
        lines.append(line)


def start_head(temp: Path, env: dict) -> tuple[subprocess.Popen, str, list[str]]:
    """``ray start --head --block`` in its own process group; wait until it reports the runtime started."""
    port, client_port, dash_port, agent_port = free_ports(4)
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
           f"--port={port}", "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false",
           "--object-store-memory=100000000", f"--temp-dir={temp}", "--disable-usage-stats",
           f"--ray-client-server-port={client_port}", f"--dashboard-port={dash_port}",
           f"--dashboard-agent-listen-port={agent_port}"]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=drain, args=(proc, lines), daemon=True).start()
    deadline = time.time() + 180
    while not any("Ray runtime started" in line for line in lines):
        if proc.poll() is not None or time.time() > deadline:
            stop_head(proc)
            pytest.fail("ray start failed:\n" + "".join(lines[-40:]))
        time.sleep(0.2)
    return proc, f"127.0.0.1:{port}", lines


def stop_head(proc: subprocess.Popen) -> None:
    """SIGTERM makes ``ray start --block`` stop every process it started; SIGKILL whatever is left."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    deadline = time.time() + 30
    while session_members(proc.pid) and time.time() < deadline:
        time.sleep(0.5)
    for pid in session_members(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def ray_address():
    """One real Ray head node for the whole module, torn down with all its processes."""
    pytest.importorskip("ray")
    temp = Path(tempfile.mkdtemp(prefix="rg-", dir="/tmp"))  # short: Ray's unix sockets live under it
    # A private cluster on 127.0.0.1 without token auth, whatever ~/.ray/auth_token another tool left:
    # with that file present `ray start` turns token auth on while a driver does not send the token.
    settings = {"RAY_DISABLE_USAGE_STATS": "1", "RAY_AUTH_MODE": "disabled"}
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    # Ray workers do not inherit the driver's sys.path: the job module (tests/) must be on theirs.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc, address, _ = start_head(temp, env)
    try:
        yield address
    finally:
        stop_head(proc)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        left = session_members(proc.pid)
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, f"Ray processes left behind: {left}"


def test_ray_matches_local_including_retries_and_failures(ray_address, tmp_path):
    jobs = [*diamond_grid(n_shared=3, n_runs=4), make_job(f"{HERE}:flaky", {"x": 9}),
            make_job(f"{HERE}:crashing", {"x": 7}),  # its worker process dies on the first attempt
            make_job(f"{HERE}:fragile", {"x": 8}, resources={"num_cpus": 0.5})]
    for name in ("local", "ray"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "BROKEN").write_text("")
    local = execute(jobs, tmp_path / "local", ExecutorConfig(workers=2, retries=2), progress=False)
    cfg = ExecutorConfig(kind="ray", ray_address=ray_address, retries=2)
    on_ray = execute(jobs, tmp_path / "ray", cfg, progress=False)
    assert on_ray.counts() == local.counts() == {"done": 9, "skipped": 0, "failed": 1, "blocked": 0}
    assert collect(tmp_path / "ray", jobs) == collect(tmp_path / "local", jobs)
    assert [(f["job_id"], len(f["attempts"])) for f in on_ray.failed] == \
        [(f["job_id"], len(f["attempts"])) for f in local.failed]
    assert (tmp_path / "ray" / "failures.json").read_text().count('"job_id"') == 1
    assert os.getpid() not in {c.get("pid") for c in calls(tmp_path / "ray") if c["fn"] == "square"}

    again = execute(jobs, tmp_path / "ray", cfg, progress=False)  # resume: only the failed job runs again
    assert again.counts() == {"done": 0, "skipped": 9, "failed": 1, "blocked": 0}


def test_job_the_cluster_cannot_place_fails_at_once(ray_address, tmp_path):
    gpu = make_job(f"{HERE}:square", {"x": 5}, out_dir="runs/{id}", resources={"num_gpus": 1})
    child = make_job(f"{HERE}:add", {"inputs": [gpu.out_dir], "bias": 0}, deps=[gpu])
    cpu = make_job(f"{HERE}:square", {"x": 6})
    cfg = ExecutorConfig(kind="ray", ray_address=ray_address, retries=1)
    report = execute([child, gpu, cpu], tmp_path, cfg, progress=False)
    assert report.counts() == {"done": 1, "skipped": 0, "failed": 1, "blocked": 1}
    assert "needs 1 GPU but the Ray cluster has 0" in report.failed[0]["error"]
    assert len(report.failed[0]["attempts"]) == 2 and report.blocked == {child.id: gpu.id}
