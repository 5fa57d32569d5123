"""Scheduler invariants on random job graphs with random failures (hypothesis), then a full resume."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from test_grid_support import HERE, calls

from rationale_sft.config.grid import ExecutorConfig
from rationale_sft.grid import execute, job_states, make_job


@st.composite
def graphs(draw) -> tuple[list[list[int]], set[int]]:
    """Dependencies of nodes 0..n-1 (each on earlier nodes only) and the set of nodes told to fail."""
    n = draw(st.integers(1, 9))
    deps = [sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else [] for i in range(n)]
    return deps, draw(st.sets(st.integers(0, n - 1), max_size=3))


def build(deps: list[list[int]]) -> list:
    jobs: list = []
    for i, ds in enumerate(deps):
        jobs.append(make_job(f"{HERE}:node", {"k": i}, deps=[jobs[d] for d in ds], out_dir="n/{id}"))
    return jobs


@settings(max_examples=40, deadline=None)
@given(graphs(), st.randoms(use_true_random=False))
def test_outcomes_partition_the_graph_and_resume_finishes_it(graph, rnd):
    deps, failing = graph
    jobs = build(deps)
    declared = jobs[:]
    rnd.shuffle(declared)  # declaration order must not matter
    bad: set[int] = set()
    for i, ds in enumerate(deps):
        if i in failing or bad & set(ds):
            bad.add(i)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in failing:
            (root / f"fail-{i}").write_text("")
        report = execute(declared, root, ExecutorConfig(retries=0), progress=False)
        ids = {j.id: i for i, j in enumerate(jobs)}
        assert sorted(ids[j] for j in report.done) == [i for i in range(len(deps)) if i not in bad]
        assert sorted(ids[f["job_id"]] for f in report.failed) == \
            sorted(i for i in failing if not bad & set(deps[i]))
        assert sorted(ids[j] for j in report.blocked) == sorted(i for i in bad if bad & set(deps[i]))
        first = [c["k"] for c in calls(root)]
        assert len(first) == len(set(first)) and all(set(deps[i]) <= set(first[:first.index(i)]) for i in first)

        for i in failing:
            (root / f"fail-{i}").unlink()
        again = execute(declared, root, ExecutorConfig(retries=0), progress=False)
        assert again.ok and sorted(ids[j] for j in again.done) == sorted(bad)
        assert sorted(c["k"] for c in calls(root)[len(first):]) == sorted(bad)
        assert job_states(root, jobs)["complete"] == [j.id for j in jobs]
