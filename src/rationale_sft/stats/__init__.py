"""Statistics: pure functions of per-subject prediction tables with explicit random generators.

- :mod:`.metrics`: AUROC, average precision, Brier, reliability curves and ECE, AUROC by group.
- :mod:`.bootstrap`: label-stratified percentile bootstrap (vectorised), paired bootstrap differences, and the
  two-level bootstrap over shared test subjects and configurations for pooled means.
- :mod:`.delong`: fast DeLong covariance, CI and paired test (Sun & Xu 2014).
- :mod:`.compare`: paired Deltas across configurations, per-factor summaries, signed-rank and sign tests,
  Holm and Benjamini-Hochberg adjustment.
- :mod:`.model`: OLS of Delta AUROC on the grid factors with cluster-robust standard errors.
"""

from rationale_sft.stats.bootstrap import (bootstrap_ci, bootstrap_table, paired_bootstrap_diff, pooled_interval,
                                          stratified_weights, subject_replicates, two_level_bootstrap)
from rationale_sft.stats.compare import (benjamini_hochberg, factor_summary, holm, paired_deltas, signed_tests,
                                         t_interval)
from rationale_sft.stats.delong import delong_auc_cov, delong_ci, delong_test
from rationale_sft.stats.metrics import (age_bands, auroc, auroc_by_group, average_precision, brier,
                                         expected_calibration_error, reliability_curve)
from rationale_sft.stats.model import gap_model, ols_cluster

__all__ = ["age_bands", "auroc", "auroc_by_group", "average_precision", "benjamini_hochberg", "bootstrap_ci",
           "bootstrap_table", "brier", "delong_auc_cov", "delong_ci", "delong_test", "expected_calibration_error",
           "factor_summary", "gap_model", "holm", "ols_cluster", "paired_bootstrap_diff", "paired_deltas",
           "pooled_interval", "reliability_curve", "signed_tests", "stratified_weights", "subject_replicates",
           "t_interval", "two_level_bootstrap"]
