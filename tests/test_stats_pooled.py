"""The two-level bootstrap over test subjects and configurations: reference loop, seed, width, speed."""

import time

import numpy as np
import pytest

from rationale_sft.stats import auroc, t_interval
from rationale_sft.stats.bootstrap import percentile_ci, strata_weights, two_level_bootstrap


def slow_two_level(y, arm, ref, rng, n_boot, level):
    """Per replicate: materialise the drawn subjects and configurations, recompute every AUROC from scratch."""
    w = strata_weights(y.astype(int), n_boot, rng)  # the same draws, in the same order, as the fast version
    pick = rng.integers(0, arm.shape[0], (n_boot, arm.shape[0]))
    pooled = []
    for b in range(n_boot):
        idx = np.repeat(np.arange(y.size), w[b].astype(int))
        deltas = [auroc(y[idx], arm[c, idx]) - auroc(y[idx], ref[c, idx]) for c in pick[b]]
        pooled.append(np.mean(deltas))
    return percentile_ci(np.array(pooled), level)


def _shared(seed, n_configs=12, n=300, config_noise=0.05):
    """Configurations that share the test subjects: the arm's per-subject error is common to every config."""
    g = np.random.default_rng(seed)
    y = g.random(n) < 0.3
    signal = y + g.normal(size=n)
    common = g.normal(size=n) * 1.2  # the arm's subject-level deviation, the same in every configuration
    ref = signal + config_noise * g.normal(size=(n_configs, n))
    arm = signal + common + config_noise * g.normal(size=(n_configs, n))
    return y, arm, ref


def test_fast_equals_slow_reference_loop_on_a_tiny_example():
    g = np.random.default_rng(5)
    y = np.array([1, 0, 0, 1, 0, 1, 0, 0, 1, 0], bool)
    arm, ref = np.round(g.random((3, 10)), 1), np.round(g.random((3, 10)), 1)  # rounded: ties included
    fast = two_level_bootstrap(y, arm, ref, np.random.default_rng(9), n_boot=60, level=0.9)
    lo, hi = slow_two_level(y, arm, ref, np.random.default_rng(9), 60, 0.9)
    assert fast["lo"] == pytest.approx(lo, abs=1e-12) and fast["hi"] == pytest.approx(hi, abs=1e-12)
    expected = np.mean([auroc(y, a) - auroc(y, r) for a, r in zip(arm, ref)])
    assert fast["mean"] == pytest.approx(expected, abs=1e-12)


def test_deterministic_for_a_seed_and_varies_across_seeds():
    y, arm, ref = _shared(1, n_configs=4, n=120)
    a = two_level_bootstrap(y, arm, ref, np.random.default_rng(3), 300)
    b = two_level_bootstrap(y, arm, ref, np.random.default_rng(3), 300)
    c = two_level_bootstrap(y, arm, ref, np.random.default_rng(4), 300)
    assert a == b and (a["lo"], a["hi"]) != (c["lo"], c["hi"])


def test_wider_than_configs_only_when_subjects_are_shared_and_noise_is_correlated():
    y, arm, ref = _shared(2)
    deltas = np.array([auroc(y, a) - auroc(y, r) for a, r in zip(arm, ref)])
    _, t_lo, t_hi = t_interval(deltas)
    g = np.random.default_rng(0)
    boot = deltas[g.integers(0, deltas.size, (1000, deltas.size))].mean(1)  # configurations only
    c_lo, c_hi = percentile_ci(boot)
    two = two_level_bootstrap(y, arm, ref, np.random.default_rng(0), 1000)
    assert two["hi"] - two["lo"] > 3 * max(t_hi - t_lo, c_hi - c_lo)
    assert two["lo"] < two["mean"] < two["hi"] and two["n_configs"] == 12


def test_a_run_scored_on_a_subset_uses_only_its_subjects():
    y, arm, ref = _shared(3, n_configs=2, n=80)
    arm[1, 40:] = np.nan
    r = two_level_bootstrap(y, arm, ref, np.random.default_rng(0), 200)
    assert r["mean"] == pytest.approx(np.mean([auroc(y, arm[0]) - auroc(y, ref[0]),
                                               auroc(y[:40], arm[1, :40]) - auroc(y, ref[1])]))


@pytest.mark.slow
def test_a_thousand_replicates_over_sixteen_configurations_take_seconds():
    y, arm, ref = _shared(4, n_configs=16, n=500)
    start = time.perf_counter()
    two_level_bootstrap(y, arm, ref, np.random.default_rng(0), 1000)
    assert time.perf_counter() - start < 10
