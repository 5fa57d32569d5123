"""Classical baselines (age+sex logistic regression, logistic regression, LightGBM) and the oracle."""
