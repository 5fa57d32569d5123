"""Grid engine faults: altered artifacts of finished jobs, stale failures.json, a killed driver's workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_grid_support import HERE, calls, diamond_grid

from rationale_sft import rundir
from rationale_sft.config.grid import ExecutorConfig
from rationale_sft.grid import collect, execute, make_job

SEQ = ExecutorConfig()
TESTS = Path(__file__).resolve().parent


def grid(tmp_path: Path) -> tuple[list, object, object]:
    """A finished diamond grid; returns (jobs, a shared square job, a run reading it)."""
    jobs = diamond_grid(n_shared=2, n_runs=2)
    assert execute(jobs, tmp_path, SEQ, progress=False).ok
    square = next(j for j in jobs if j.fn.endswith(":square"))
    run = next(j for j in jobs if square.out_dir in j.kwargs.get("inputs", []))
    return jobs, square, run


def test_manifest_records_every_artifact(tmp_path):
    jobs, square, _ = grid(tmp_path)
    artifacts = rundir.read_json(tmp_path / square.out_dir / "manifest.json")["artifacts"]
    assert set(artifacts) == {"part.txt", "value.json"}
    value = tmp_path / square.out_dir / "value.json"
    assert artifacts["value.json"]["size"] == value.stat().st_size and len(artifacts["value.json"]["sha256"]) == 64


def test_truncated_artifact_is_rebuilt_with_its_dependants(tmp_path, capsys):
    jobs, square, run = grid(tmp_path)
    value = tmp_path / square.out_dir / "value.json"
    good = value.read_bytes()
    value.write_bytes(good[:3])
    report = execute(jobs, tmp_path, SEQ, progress=False)
    assert square.id in report.done and run.id in report.done and square.id not in report.skipped
    assert value.read_bytes() == good
    assert f"{value} is 3 bytes" in capsys.readouterr().err


def test_same_size_alteration_is_caught_under_verify(tmp_path):
    jobs, _, run = grid(tmp_path)
    value = tmp_path / run.out_dir / "value.json"
    good = value.read_bytes()
    value.write_bytes(good.replace(b'"value"', b'"VALUE"'))
    assert execute(jobs, tmp_path, SEQ, progress=False).counts()["skipped"] == 4  # sizes only: not seen
    report = execute(jobs, tmp_path, SEQ, progress=False, verify=True)
    assert report.done == [run.id] and value.read_bytes() == good


def test_inputs_of_a_job_about_to_run_are_hash_checked(tmp_path):
    jobs, square, run = grid(tmp_path)
    value = tmp_path / square.out_dir / "value.json"
    value.write_bytes(value.read_bytes().replace(b'"value"', b'"VALUE"'))
    (tmp_path / run.out_dir / "DONE").unlink()  # the run will read the altered file: check it first
    report = execute(jobs, tmp_path, SEQ, progress=False)
    assert square.id in report.done and run.id in report.done
    assert collect(tmp_path, [run])[0]["value"] == run.kwargs["bias"] + sum(
        rundir.read_json(tmp_path / d / "value.json")["value"] for d in run.kwargs["inputs"])


def test_unreadable_result_json_is_rebuilt(tmp_path):
    jobs, _, run = grid(tmp_path)
    (tmp_path / run.out_dir / "result.json").write_text("{trunc")
    assert execute(jobs, tmp_path, SEQ, progress=False).done == [run.id]


def test_failures_of_jobs_complete_on_disk_are_dropped(tmp_path):
    (tmp_path / "BROKEN").write_text("")
    one, two = make_job(f"{HERE}:fragile", {"x": 1}), make_job(f"{HERE}:fragile", {"x": 2})
    execute([one, two], tmp_path, ExecutorConfig(retries=0), progress=False)
    (tmp_path / "BROKEN").unlink()
    execute([one], tmp_path, SEQ, progress=False)  # one finishes; two's entry (not run) stays
    other = tmp_path / "other"
    execute([two], other, SEQ, progress=False)
    os.replace(other / two.out_dir, tmp_path / two.out_dir)  # two completed elsewhere, moved in
    execute([make_job(f"{HERE}:square", {"x": 3})], tmp_path, SEQ, progress=False)
    assert not (tmp_path / "failures.json").exists()


def covering(out_dir: Path, root: Path) -> dict:
    """A job whose real output lives elsewhere in the grid (as a base job's cached model does)."""
    rundir.run_stage(root / "shared" / "model", lambda d: rundir.write_text(d / "weights.bin", "0123") and None)
    rundir.run_stage(out_dir, lambda d: {"covers": ["../../shared/model"]})
    return {}


def test_outputs_a_job_covers_elsewhere_are_checked_too(tmp_path):
    job = make_job(f"{HERE.replace('support', 'integrity')}:covering", {}, out_dir="shared/cover-{id}")
    run = make_job(f"{HERE}:add", {"inputs": [], "bias": 1}, deps=[job])
    assert execute([job, run], tmp_path, SEQ, progress=False).ok
    (tmp_path / "shared" / "model" / "weights.bin").write_text("0124")
    (tmp_path / run.out_dir / "DONE").unlink()  # reads the job's output now: checked by hash
    report = execute([job, run], tmp_path, SEQ, progress=False)
    assert job.id in report.rebuilt and "weights.bin has other contents" in report.rebuilt[job.id]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def test_pool_workers_die_with_a_killed_driver(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "test_grid_support", str(tmp_path), "2", "60"], cwd=TESTS,
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(calls(tmp_path)) < 2:
            assert proc.poll() is None
            time.sleep(0.1)
        workers = {c["pid"] for c in calls(tmp_path)}
        assert len(workers) == 2 and proc.pid not in workers
        os.kill(proc.pid, signal.SIGKILL)  # the driver alone, as the OOM killer would
        proc.wait(timeout=30)
        deadline = time.time() + 15
        while time.time() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.1)
        assert not any(_alive(p) for p in workers), "pool workers outlived their driver"
    finally:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_report_names_the_file(tmp_path):
    jobs, square, _ = grid(tmp_path)
    (tmp_path / square.out_dir / "value.json").unlink()
    report = execute(jobs, tmp_path, SEQ, progress=False)
    assert square.id in report.done and json.loads((tmp_path / square.out_dir / "value.json").read_text())
