"""Bootstrap, DeLong, signed-rank tests, p-value adjustment and the cluster-robust gap model."""

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

from rationale_sft.stats import bootstrap as B
from rationale_sft.stats import compare as C
from rationale_sft.stats import delong as D
from rationale_sft.stats import model as MD


def slow_delong(y, scores):
    """O(n1 n0) DeLong from the psi kernel, written independently of the midrank algorithm."""
    y = np.asarray(y, bool)
    aucs, v10s, v01s = [], [], []
    for s in scores:
        psi = (s[y][:, None] > s[~y][None, :]) + 0.5 * (s[y][:, None] == s[~y][None, :])
        aucs.append(psi.mean())
        v10s.append(psi.mean(1))
        v01s.append(psi.mean(0))
    v10, v01 = np.array(v10s), np.array(v01s)
    k = len(scores)
    s10 = np.array([[np.cov(v10[i], v10[j])[0, 1] for j in range(k)] for i in range(k)])
    s01 = np.array([[np.cov(v01[i], v01[j])[0, 1] for j in range(k)] for i in range(k)])
    return np.array(aucs), s10 / y.sum() + s01 / (~y).sum()


def _pair(seed, n=400, ties=True):
    g = np.random.default_rng(seed)
    y = g.random(n) < 0.25
    a = g.normal(size=n) + 1.0 * y
    b = 0.6 * a + g.normal(size=n) * 0.8 + 0.3 * y
    return (y, np.round(a, 1), np.round(b, 1)) if ties else (y, a, b)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [True, False])
def test_fast_delong_matches_slow_reference(seed, ties):
    y, a, b = _pair(seed, ties=ties)
    aucs, cov = D.delong_auc_cov(y, np.stack([a, b]))
    ref_aucs, ref_cov = slow_delong(y, [a, b])
    np.testing.assert_allclose(aucs, ref_aucs, atol=1e-12)
    np.testing.assert_allclose(cov, ref_cov, atol=1e-12)
    r = D.delong_test(y, a, b)
    se = np.sqrt(ref_cov[0, 0] + ref_cov[1, 1] - 2 * ref_cov[0, 1])
    assert r["se"] == pytest.approx(se)
    assert r["p"] == pytest.approx(2 * sps.norm.sf(abs((ref_aucs[0] - ref_aucs[1]) / se)))
    assert r["lo"] < r["diff"] < r["hi"]


def test_delong_identical_scores_and_clear_difference():
    y, a, b = _pair(7, n=2000, ties=False)
    same = D.delong_test(y, a, a)
    assert (same["diff"], same["se"], same["p"]) == (0.0, 0.0, 1.0)
    noise = np.random.default_rng(0).normal(size=y.size)
    assert D.delong_test(y, a, noise)["p"] < 1e-10


def test_bootstrap_is_deterministic_for_a_seed_and_varies_across_seeds():
    y, a, _ = _pair(1)
    t1 = B.bootstrap_table(y, a, seed=11, n_boot=300)
    t2 = B.bootstrap_table(y, a, seed=11, n_boot=300)
    t3 = B.bootstrap_table(y, a, seed=12, n_boot=300)
    assert t1.equals(t2) and not t1.equals(t3)
    assert set(t1["seed"]) == {11} and set(t1["n"]) == {y.size}
    est = t1.filter(pl.col("metric") == "auroc").row(0, named=True)
    assert est["lo"] < est["estimate"] < est["hi"]


def test_bootstrap_se_agrees_with_delong_se():
    y, a, b = _pair(3, n=3000, ties=False)
    reps = B._replicates(y, [a, b], B.METRICS["auroc"], 2000, np.random.default_rng(5))
    r = D.delong_test(y, a, b)
    assert reps[0].std() == pytest.approx(np.sqrt(D.delong_auc_cov(y, a[None])[1][0, 0]), rel=0.15)
    assert (reps[0] - reps[1]).std() == pytest.approx(r["se"], rel=0.15)
    # draws come in fixed chunks: 512 replicates are the first 512 of 2000 from the same generator
    again = B._replicates(y, [a], B.METRICS["auroc"], 512, np.random.default_rng(5))
    np.testing.assert_allclose(again[0], reps[0, :512])


def test_stratified_resamples_keep_class_counts():
    y = np.array([1] * 3 + [0] * 17)
    w = B.stratified_weights(y, 50, np.random.default_rng(0))
    assert (w[:, :3].sum(1) == 3).all() and (w[:, 3:].sum(1) == 17).all()


def test_paired_bootstrap_of_identical_scores_is_zero():
    y, a, _ = _pair(2)
    d = B.paired_bootstrap_diff(y, a, a, np.random.default_rng(0), n_boot=200)
    assert (d["diff"], d["lo"], d["hi"]) == (0.0, 0.0, 0.0)


def test_holm_and_bh_against_hand_computed_values():
    # hand-computed; statsmodels 0.15.0 multipletests(p, method="holm" / "fdr_bh") gives the same
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, np.nan])
    holm = C.holm(p)
    bh = C.benjamini_hochberg(p)
    np.testing.assert_allclose(holm[:8], [0.008, 0.056, 0.234, 0.234, 0.234, 0.234, 0.234, 0.234])
    np.testing.assert_allclose(bh[:8], [0.008, 0.032, 0.0672, 0.0672, 0.0672, 0.08, 0.08457142857, 0.205])
    assert np.isnan(holm[8]) and np.isnan(bh[8])
    assert (bh[:8] <= holm[:8]).all()


def test_t_interval_and_signed_tests_against_scipy():
    x = np.array([-0.12, -0.08, -0.15, -0.02, -0.11, 0.01, -0.09])
    mean, lo, hi = C.t_interval(x, 0.9)
    ref = sps.t.interval(0.9, x.size - 1, loc=x.mean(), scale=sps.sem(x))
    assert (lo, hi) == pytest.approx(ref) and mean == pytest.approx(x.mean())
    p_w, p_s = C.signed_tests(x)
    # hand: one positive difference with the smallest |d| -> W+ = 1 of 7: P = 2 * 2/128
    assert p_w == pytest.approx(4 / 128)
    assert p_s == pytest.approx(2 * 8 / 128)
    assert C.signed_tests(np.zeros(4)) == (1.0, 1.0)


def test_factor_summary_adjusts_within_families():
    g = np.random.default_rng(0)
    rows = [{"arm": arm, "family": fam, "scale": sc, "seed": s, "auroc": 0.7 - (arm != "label_only") * 0.1
             + g.normal() * 0.01} for arm in ("label_only", "freeform", "stepwise") for fam in ("a", "b")
            for sc in (100, 400) for s in range(3)]
    d = C.paired_deltas(pl.DataFrame(rows))
    t = C.factor_summary(d, ("family", "scale"))
    overall = t.filter(pl.col("factor") == "overall")
    assert overall["arm"].to_list() == ["freeform", "stepwise"] and overall["n"].to_list() == [12, 12]
    assert (overall["hi"] < 0).all()
    np.testing.assert_allclose(overall["p_holm"], C.holm(overall["p_wilcoxon"].to_numpy()))
    assert t.filter(pl.col("factor") == "scale")["level"].to_list() == ["100", "400", "100", "400"]


def test_ols_cluster_singletons_equal_hc1_and_coefficients_match_lstsq():
    g = np.random.default_rng(1)
    X = np.column_stack([np.ones(40), g.normal(size=40), g.random(40) < 0.5])
    y = X @ [0.5, -1.0, 2.0] + g.normal(size=40) * (1 + X[:, 1] ** 2)
    t = MD.ols_cluster(X, y, np.arange(40), ["a", "b", "c"])
    coef = np.linalg.lstsq(X, y, rcond=None)[0]
    np.testing.assert_allclose(t["coef"], coef)
    e = y - X @ coef
    inv = np.linalg.inv(X.T @ X)
    hc1 = inv @ (X.T * e**2) @ X @ inv * 40 / (40 - 3)
    # CR1 with one observation per cluster: G/(G-1) * (N-1)/(N-K) = N/(N-K), the HC1 factor
    np.testing.assert_allclose(t["se"] ** 2, np.diag(hc1))


def test_ols_cluster_matches_statsmodels():
    g = np.random.default_rng(0)
    n = 60
    X = np.column_stack([np.ones(n), g.normal(size=n), g.random(n) < 0.5])
    cl = np.repeat(np.arange(12), 5)
    y = X @ [1, 2, 3] + g.normal(size=n) + np.repeat(g.normal(size=12), 5)
    t = MD.ols_cluster(X, y, cl, ["a", "b", "c"])
    # statsmodels 0.15.0: OLS(y, X).fit(cov_type="cluster", cov_kwds={"groups": cl}, use_t=True)
    np.testing.assert_allclose(t["coef"], [0.83857078, 2.32848282, 2.90160254], rtol=1e-7)
    np.testing.assert_allclose(t["se"], [0.21548744, 0.21938082, 0.32269549], rtol=1e-7)
    np.testing.assert_allclose(t["p"], [2.51305569e-03, 4.06358830e-07, 2.11501205e-06], rtol=1e-6)


def test_gap_model_recovers_planted_effects_and_drops_nested_terms():
    g = np.random.default_rng(2)
    rows = []
    for fam, model in (("a", "a-small"), ("b", "b-small")):
        for scale in (100, 200, 400, 800):
            for seed in range(3):
                for arm, eff in (("freeform", -0.10), ("stepwise", -0.14)):
                    d = eff + (fam == "b") * -0.05 + 0.02 * np.log2(scale / 200) + g.normal() * 0.005
                    rows.append({"arm": arm, "family": fam, "model": model, "base": "instruct", "scale": scale,
                                 "seed": seed, "delta": d})
    t, dropped = MD.gap_model(pl.DataFrame(rows))
    coef = dict(zip(t["term"], t["coef"]))
    assert coef["arm=stepwise"] == pytest.approx(-0.04, abs=0.01)
    assert coef["family=b"] == pytest.approx(-0.05, abs=0.01)
    assert coef["log2(scale) (centred)"] == pytest.approx(0.02, abs=0.005)
    assert "model=b-small" in dropped and "base (one level)" in dropped
    assert set(t["clusters"]) == {24}


def test_delong_with_a_single_positive_has_undefined_variance():
    y = np.array([1, 0, 0, 0])
    r = D.delong_test(y, np.array([0.9, 0.1, 0.5, 0.3]), np.array([0.2, 0.1, 0.5, 0.3]))
    assert (r["auc_a"], r["auc_b"]) == (1.0, pytest.approx(1 / 3))
    assert np.isnan(r["se"]) and np.isnan(r["p"]) and np.isnan(r["lo"])


def test_delong_rejects_at_about_the_nominal_rate_under_the_null():
    """Two scores with the same signal: about 5% of paired tests reject at 0.05 (SE is neither too small nor large)."""
    g = np.random.default_rng(11)
    rejections = 0
    for _ in range(300):
        y = g.random(300) < 0.3
        z = g.normal(size=300) + 0.8 * y
        a, b = z + g.normal(size=300), z + g.normal(size=300)
        rejections += D.delong_test(y, a, b)["p"] < 0.05
    assert 0.02 <= rejections / 300 <= 0.09
