"""Grid engine on the local executor: ordering, idempotence, skips, retries, failures, resume, process pool."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_grid_support import HERE, calls, diamond_grid

from rationale_sft import rundir
from rationale_sft.config.grid import ExecutorConfig
from rationale_sft.errors import InputError
from rationale_sft.grid import collect, execute, is_complete, job_states, make_job, order
from rationale_sft.grid.execute import root_lock

SEQ = ExecutorConfig()


def test_dependencies_run_first_and_results_are_right(tmp_path):
    jobs = diamond_grid(n_shared=3, n_runs=4)
    report = execute(jobs, tmp_path, SEQ, progress=False)
    assert report.ok and len(report.done) == 7 and report.counts()["skipped"] == 0
    seen = [c["fn"] for c in calls(tmp_path)]
    assert seen[:3] == ["square"] * 3 and seen[3:] == ["add"] * 4  # runs were declared before shared
    rows = {r["job_id"]: r for r in collect(tmp_path, jobs)}
    for job in jobs:
        if job.fn.endswith(":add"):
            want = job.kwargs["bias"] + sum(rundir.read_json(tmp_path / d / "value.json")["value"]
                                            for d in job.kwargs["inputs"])
            assert rows[job.id]["value"] == want == report.metrics[job.id]["value"]


def test_same_declaration_is_one_job_and_ids_follow_content():
    a, b = diamond_grid(2, 2), diamond_grid(2, 2)
    assert [j.id for j in a] == [j.id for j in b]
    assert len(order(a + b)) == 4
    base = make_job(f"{HERE}:square", {"x": 1})
    assert make_job(f"{HERE}:square", {"x": 2}).id != base.id
    assert make_job(f"{HERE}:square", {"x": 1}, deps=[base]).id != base.id
    assert make_job(f"{HERE}:square", {"x": (1, 2)}).kwargs == {"x": [1, 2]}  # as JSON: what workers get


def test_second_execute_runs_nothing(tmp_path):
    jobs = diamond_grid(n_shared=3, n_runs=5)
    first = execute(jobs, tmp_path, SEQ, progress=False)
    n_calls = len(calls(tmp_path))
    second = execute(jobs, tmp_path, SEQ, progress=False)
    assert n_calls == 8 and len(calls(tmp_path)) == n_calls
    assert second.counts() == {"done": 0, "skipped": 8, "failed": 0, "blocked": 0}
    rows = collect(tmp_path, jobs)
    assert len(rows) == 8 and {r["job_id"] for r in rows} == set(first.done) == set(second.skipped)


def test_retry_after_a_failed_attempt(tmp_path):
    job = make_job(f"{HERE}:flaky", {"x": 7})
    report = execute([job], tmp_path, ExecutorConfig(retries=1), progress=False)
    assert report.ok and report.done == [job.id]
    assert report.retried == {job.id: ["RuntimeError: flaky job 7: first attempt fails"]}
    assert [c["fn"] for c in calls(tmp_path)] == ["flaky", "flaky"]
    assert not (tmp_path / "failures.json").exists()
    assert collect(tmp_path, [job])[0]["value"] == 7


def test_permanent_failure_is_reported_blocks_dependants_and_resumes(tmp_path):
    (tmp_path / "BROKEN").write_text("")
    bad = make_job(f"{HERE}:fragile", {"x": 1}, out_dir="shared/fragile-{id}")
    child = make_job(f"{HERE}:add", {"inputs": [bad.out_dir], "bias": 0}, deps=[bad])
    grandchild = make_job(f"{HERE}:add", {"inputs": [child.out_dir], "bias": 1}, deps=[child])
    others = diamond_grid(n_shared=2, n_runs=2)
    jobs = [grandchild, child, bad, *others]
    report = execute(jobs, tmp_path, ExecutorConfig(retries=2), progress=False)
    assert report.counts() == {"done": 4, "skipped": 0, "failed": 1, "blocked": 2}
    assert report.blocked == {child.id: bad.id, grandchild.id: bad.id}
    failures = json.loads((tmp_path / "failures.json").read_text())
    assert [f["job_id"] for f in failures] == [bad.id]
    entry = failures[0]
    assert entry["fn"] == bad.fn and entry["kwargs"] == {"x": 1} and len(entry["attempts"]) == 3
    assert "ROOT/BROKEN exists" in entry["error"] and "Traceback" in entry["traceback"]
    assert sorted(entry["blocked"]) == sorted([child.id, grandchild.id])
    assert not (tmp_path / child.out_dir).exists() and len(collect(tmp_path, jobs)) == 4

    (tmp_path / "BROKEN").unlink()  # the user fixes the cause and relaunches the same grid
    n_before = len(calls(tmp_path))
    again = execute(jobs, tmp_path, ExecutorConfig(retries=0), progress=False)
    assert again.counts() == {"done": 3, "skipped": 4, "failed": 0, "blocked": 0}
    assert sorted(c["fn"] for c in calls(tmp_path)[n_before:]) == ["add", "add", "fragile"]
    assert not (tmp_path / "failures.json").exists()
    assert collect(tmp_path, [grandchild])[0]["value"] == 2


def test_failures_of_other_grids_are_kept(tmp_path):
    (tmp_path / "BROKEN").write_text("")
    one, two = make_job(f"{HERE}:fragile", {"x": 1}), make_job(f"{HERE}:fragile", {"x": 2})
    execute([one], tmp_path, ExecutorConfig(retries=0), progress=False)
    execute([two], tmp_path, ExecutorConfig(retries=0), progress=False)
    assert {f["job_id"] for f in rundir.read_json(tmp_path / "failures.json")} == {one.id, two.id}
    (tmp_path / "BROKEN").unlink()
    execute([two], tmp_path, ExecutorConfig(retries=0), progress=False)
    assert [f["job_id"] for f in rundir.read_json(tmp_path / "failures.json")] == [one.id]


def test_job_that_skips_done_is_a_failure(tmp_path):
    job = make_job(f"{HERE}:forgetful", {})
    report = execute([job], tmp_path, ExecutorConfig(retries=1), progress=False)
    assert [f["job_id"] for f in report.failed] == [job.id]
    assert "without writing" in report.failed[0]["error"] and len(report.failed[0]["attempts"]) == 2
    assert (tmp_path / job.out_dir / "value.json").exists() and collect(tmp_path, [job]) == []


def test_partial_directories_are_run_again(tmp_path):
    jobs = diamond_grid(n_shared=2, n_runs=2)
    square = next(j for j in jobs if j.fn.endswith(":square"))
    run = next(j for j in jobs if j.fn.endswith(":add"))
    (tmp_path / square.out_dir).mkdir(parents=True)
    (tmp_path / square.out_dir / "part.txt").write_text("killed mid-write")
    (tmp_path / run.out_dir).mkdir(parents=True)
    (tmp_path / run.out_dir / "DONE").write_text("killed before result.json")
    assert not is_complete(tmp_path, square) and not is_complete(tmp_path, run)
    assert job_states(tmp_path, jobs) == {"complete": [], "partial": [square.id, run.id],
                                    "missing": [j.id for j in order(jobs) if j not in (square, run)]}
    report = execute(jobs, tmp_path, SEQ, progress=False)
    assert report.ok and len(report.done) == 4 and all(is_complete(tmp_path, j) for j in jobs)
    assert job_states(tmp_path, jobs)["complete"] == [j.id for j in order(jobs)]


def test_process_pool_matches_sequential(tmp_path):
    jobs = diamond_grid(n_shared=3, n_runs=6)
    seq = execute(jobs, tmp_path / "seq", SEQ, progress=False)
    pool = execute(jobs, tmp_path / "pool", ExecutorConfig(workers=2), progress=False)
    assert seq.ok and pool.ok and sorted(seq.done) == sorted(pool.done)
    assert collect(tmp_path / "seq", jobs) == collect(tmp_path / "pool", jobs)
    assert os.getpid() not in {c["pid"] for c in calls(tmp_path / "pool") if c["fn"] == "square"}
    for job in jobs:
        assert (tmp_path / "seq" / job.out_dir / "value.json").read_text() == \
            (tmp_path / "pool" / job.out_dir / "value.json").read_text()


def test_process_pool_retries_and_reports(tmp_path):
    (tmp_path / "BROKEN").write_text("")
    jobs = [make_job(f"{HERE}:flaky", {"x": 3}), make_job(f"{HERE}:fragile", {"x": 4}),
            *diamond_grid(n_shared=2, n_runs=1)]
    report = execute(jobs, tmp_path, ExecutorConfig(workers=2, retries=1), progress=False)
    assert report.counts() == {"done": 4, "skipped": 0, "failed": 1, "blocked": 0}
    assert [f["kwargs"] for f in report.failed] == [{"x": 4}]


def test_process_pool_survives_a_killed_worker(tmp_path):
    jobs = [make_job(f"{HERE}:crashing", {"x": 1}), *diamond_grid(n_shared=2, n_runs=3)]
    report = execute(jobs, tmp_path, ExecutorConfig(workers=2, retries=2), progress=False)
    assert report.ok and len(report.done) == 6
    assert [c["fn"] for c in calls(tmp_path)].count("crashing") == 2
    assert collect(tmp_path, jobs[:1])[0]["value"] == 1


def test_pool_workers_share_the_cores(tmp_path):
    job = make_job(f"{HERE}:threads", {})
    report = execute([job], tmp_path, ExecutorConfig(workers=2), progress=False)
    want = os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // 2)))
    assert report.metrics[job.id]["omp"] == want and report.metrics[job.id]["pid"] != os.getpid()


def test_summary_is_printed(tmp_path, capsys):
    (tmp_path / "BROKEN").write_text("")
    execute([make_job(f"{HERE}:fragile", {"x": 5})], tmp_path, ExecutorConfig(retries=0), progress=True)
    err = capsys.readouterr().err
    assert "failed" in err and "ROOT/BROKEN exists" in err and "failures.json" in err


def test_live_progress_on_a_terminal(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich treats stderr as a terminal
    jobs = diamond_grid(n_shared=2, n_runs=3, sleep=0.05)
    execute(jobs[-2:], tmp_path, SEQ, progress=False)  # the two shared jobs
    execute(jobs, tmp_path, SEQ, progress=True)
    err = capsys.readouterr().err
    assert "3 done, 0 failed, 0 blocked, 0 left" in err and "eta 0:00:00" in err
    assert "skipped" in err and "│ skipped │    2 │" in err


def test_one_line_per_job_in_a_log(tmp_path, capsys):
    shared = make_job(f"{HERE}:square", {"x": 2}, out_dir="shared/square-{id}", label="square two")
    run = make_job(f"{HERE}:add", {"inputs": [shared.out_dir], "bias": 1}, deps=[shared], out_dir="runs/{id}")
    (tmp_path / "BROKEN").write_text("")
    fragile = make_job(f"{HERE}:fragile", {"x": 5}, label="fragile five")
    execute([run, shared, fragile], tmp_path, ExecutorConfig(retries=1), progress=True)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("[")]
    assert [ln.split(" in ")[0] for ln in lines] == [
        "[1/3] done square two", "[1/3] failed, will retry fragile five", f"[2/3] done add {run.out_dir}",
        "[3/3] failed fragile five"]
    assert lines[0].split(" | ")[1:] == ["1 done, 0 failed, 0 blocked, 2 left", lines[0].split(" | ")[2]]
    assert lines[-1].endswith("eta 0:00:00") and "| 2 done, 1 failed, 0 blocked, 0 left, 1 retried |" in lines[-1]


def test_one_driver_per_root(tmp_path):
    jobs = diamond_grid(n_shared=1, n_runs=1)
    with root_lock(tmp_path):
        with pytest.raises(InputError, match=f"another grid driver is running on {tmp_path} \\(pid {os.getpid()}"):
            execute(jobs, tmp_path, SEQ, progress=False)
    assert execute(jobs, tmp_path, SEQ, progress=False).ok


def test_numpy_metrics_are_stored_as_numbers(tmp_path):
    job = make_job(f"{HERE}:numpy_metrics", {"n": 3})
    execute([job], tmp_path, SEQ, progress=False)
    assert collect(tmp_path, [job])[0]["mean"] == 1.0 and collect(tmp_path, [job])[0]["values"] == [0, 1, 2]


def test_declaration_errors_name_the_problem(tmp_path):
    a = make_job(f"{HERE}:square", {"x": 1})
    b = make_job(f"{HERE}:add", {"inputs": [a.out_dir], "bias": 0}, deps=[a])
    with pytest.raises(InputError, match="not among the jobs given"):
        execute([b], tmp_path, SEQ, progress=False)
    with pytest.raises(InputError, match="got NaN for key 'cfg.lr'"):
        make_job(f"{HERE}:square", {"x": 1, "cfg": {"lr": float("nan")}})
    with pytest.raises(InputError, match="reserved names"):
        make_job(f"{HERE}:square", {"x": 1, "out_dir": "elsewhere"})
    with pytest.raises(InputError, match="inside the grid root"):
        make_job(f"{HERE}:square", {"x": 1}, out_dir="../outside/{id}")
    with pytest.raises(InputError, match="unknown resource 'gpus'"):
        make_job(f"{HERE}:square", {"x": 1}, resources={"gpus": 1})
    with pytest.raises(InputError, match="declared twice"):
        order([a, make_job(f"{HERE}:square", {"x": 1}, out_dir="other/{id}")])
    with pytest.raises(InputError, match="share out_dir 'shared/one'"):
        order([make_job(f"{HERE}:square", {"x": 1}, out_dir="shared/one"),
               make_job(f"{HERE}:square", {"x": 2}, out_dir="shared/one")])
    with pytest.raises(InputError, match="package.module:function"):
        make_job("square", {})
    assert not Path(tmp_path / "failures.json").exists()
