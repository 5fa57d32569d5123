"""Grid MLflow logging into a real sqlite tracking store: one run per executed job, params and metrics."""

from __future__ import annotations

import pytest
from test_grid_support import HERE, diamond_grid

from rationale_sft.config.grid import ExecutorConfig
from rationale_sft.grid import execute, make_job


@pytest.mark.slow
def test_runs_params_and_metrics_land_in_sqlite(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    root = tmp_path / "grid"
    root.mkdir()
    (root / "BROKEN").write_text("")
    wide = make_job(f"{HERE}:wide", {"values": [i / 10 for i in range(250)]})
    jobs = [*diamond_grid(n_shared=2, n_runs=2), wide, make_job(f"{HERE}:fragile", {"x": 3})]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = ExecutorConfig(retries=0, mlflow_uri=uri, mlflow_experiment="grid-test")
    report = execute(jobs, root, cfg, progress=False)
    assert report.counts() == {"done": 5, "skipped": 0, "failed": 1, "blocked": 0}

    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("grid-test")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {j.id for j in jobs}
    assert {r.info.status for name, r in runs.items() if name != jobs[-1].id} == {"FINISHED"}
    failed = runs[jobs[-1].id]
    assert failed.info.status == "FAILED" and "ROOT/BROKEN exists" in failed.data.tags["error"]
    for job in jobs[:4]:
        run = runs[job.id]
        assert run.data.tags["job_id"] == job.id and run.data.tags["fn"] == job.fn
        assert run.data.metrics["value"] == report.metrics[job.id]["value"]
        assert "label" not in run.data.metrics and run.data.metrics["job_seconds"] >= 0
    add = next(j for j in jobs if j.fn.endswith(":add"))
    assert runs[add.id].data.params == {"inputs.0": add.kwargs["inputs"][0], "inputs.1": add.kwargs["inputs"][1],
                                        "bias": str(add.kwargs["bias"]), "sleep": "0.0"}

    assert len(runs[wide.id].data.params) == 250 and runs[wide.id].data.params["values.249"] == "24.9"
    assert len(runs[wide.id].data.metrics) == 251 and runs[wide.id].data.metrics["m.249"] == 24.9

    again = execute(jobs, root, cfg, progress=False)  # finished jobs are skipped and not logged twice
    assert again.counts()["skipped"] == 5
    assert len(client.search_runs([exp.experiment_id])) == len(jobs) + 1
    assert not (tmp_path / "mlruns").exists()
