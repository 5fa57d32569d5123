"""The exact 5-year risk agrees with the outcome sampler, competing death included."""

from __future__ import annotations

import numpy as np
import pytest

from rationale_sft.cohort.synth_hazard import HORIZON, five_year_risk, gompertz_time, sample_outcomes
from rationale_sft.config.synth import SynthConfig


@pytest.mark.parametrize("log_a, log_d", [(-3.0, -3.5), (-5.0, -2.0), (-6.5, -6.0)])
def test_sampled_labels_agree_with_the_exact_risk(log_a, log_d):
    cfg = SynthConfig(death_hr_after_adrd=3.0)
    n = 400_000
    lh = {"logh_textbook": np.full(n, log_a), "logh_hidden": np.zeros(n), "logh_death": np.full(n, log_d)}
    out = sample_outcomes(lh, cfg, np.random.default_rng(7))
    risk = five_year_risk(np.array([log_a]), np.array([log_d]), cfg.adrd_age_slope, cfg.death_age_slope)[0]
    se = np.sqrt(risk * (1 - risk) / n)
    assert abs(out["label"].mean() - risk) < 4 * se
    # competing death matters: without it the risk is higher
    no_death = five_year_risk(np.array([log_a]), np.array([-40.0]), cfg.adrd_age_slope, cfg.death_age_slope)[0]
    assert no_death > risk


def test_death_after_onset_is_later_than_onset_and_more_likely():
    n = 200_000
    lh = {"logh_textbook": np.full(n, -1.0), "logh_hidden": np.zeros(n), "logh_death": np.full(n, -4.0)}
    died = {}
    for hr in (1.0, 5.0):
        out = sample_outcomes(lh, SynthConfig(death_hr_after_adrd=hr), np.random.default_rng(3))
        onset = np.isfinite(out["t_adrd"])
        assert (out["t_death"][onset] > out["t_adrd"][onset]).all()
        died[hr] = (out["t_death"][onset] < out["t_adrd"][onset] + HORIZON).mean()
    assert died[5.0] > 2 * died[1.0] > 0


def test_gompertz_inverse_matches_its_cumulative_hazard():
    need = np.array([0.01, 0.5, 3.0])
    t = gompertz_time(np.log(np.array([0.02, 0.02, 0.02])), 0.1, need)
    assert np.allclose(0.02 * np.expm1(0.1 * t) / 0.1, need)
