"""Classical baselines (age+sex logistic regression, logistic regression, LightGBM) and the oracle.

``features.build_features`` turns each subject's events before its prediction time into a sparse matrix
(reusable by other stages); ``models.FITTERS`` holds one fitting function per model; ``fit.fit_baselines``
is the stage: train on the train split (or a nested subset), evaluate on held_out, write predictions in
the meds-evaluation schema and ``metrics.json`` (docs/baselines.md, docs/contracts.md section 3).
"""
