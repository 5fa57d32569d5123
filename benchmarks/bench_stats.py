"""Benchmark the statistics: fast DeLong vs the O(n^2) reference, vectorised bootstrap vs a per-replicate loop.

Prints figures; ratios are measured within one run (the machine may be shared, so absolute times vary).
"""

from __future__ import annotations

import time

import numpy as np

from rationale_sft.stats.bootstrap import METRICS, _replicates, stratified_weights
from rationale_sft.stats.delong import delong_auc_cov, delong_test
from rationale_sft.stats.metrics import auroc


def slow_delong_cov(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """O(n_pos n_neg) DeLong covariance from the psi kernel (the reference the fast algorithm replaces)."""
    v10, v01 = [], []
    for s in scores:
        psi = (s[y][:, None] > s[~y][None, :]) + 0.5 * (s[y][:, None] == s[~y][None, :])
        v10.append(psi.mean(1))
        v01.append(psi.mean(0))
    return np.cov(np.array(v10)) / y.sum() + np.cov(np.array(v01)) / (~y).sum()


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def data(n: int, seed: int = 0):
    g = np.random.default_rng(seed)
    y = g.random(n) < 0.1
    a = g.normal(size=n) + y
    b = 0.7 * a + g.normal(size=n) * 0.7 + 0.2 * y
    return y, np.round(a, 3), np.round(b, 3)


def main() -> None:
    y, a, b = data(100_000)
    t_fast = best_of(lambda: delong_test(y, a, b))
    r = delong_test(y, a, b)
    print(f"DeLong paired test, n=100,000 (10% cases): {t_fast * 1e3:.1f} ms "
          f"(diff {r['diff']:+.4f}, se {r['se']:.4f}, p {r['p']:.3g})")
    ys, as_, bs = data(5_000, 1)
    t_fast_small = best_of(lambda: delong_auc_cov(ys, np.stack([as_, bs])))
    t_slow_small = best_of(lambda: slow_delong_cov(ys, np.stack([as_, bs])), 1)
    print(f"n=5,000: fast {t_fast_small * 1e3:.2f} ms vs O(n^2) reference {t_slow_small * 1e3:.1f} ms "
          f"({t_slow_small / t_fast_small:.0f}x)")

    yb, ab, _ = data(10_000, 2)
    n_boot = 1000
    t_vec = best_of(lambda: _replicates(yb, [ab], METRICS["auroc"], n_boot, np.random.default_rng(0)))

    def loop():
        g = np.random.default_rng(0)
        for _ in range(n_boot):
            w = stratified_weights(yb, 1, g)[0]
            idx = np.repeat(np.arange(yb.size), w.astype(int))
            auroc(yb[idx], ab[idx])

    t_loop = best_of(loop, 1)
    print(f"bootstrap AUROC, n=10,000, {n_boot} replicates: vectorised {t_vec:.2f} s vs "
          f"per-replicate resample+rank {t_loop:.2f} s ({t_loop / t_vec:.1f}x)")


if __name__ == "__main__":
    main()
