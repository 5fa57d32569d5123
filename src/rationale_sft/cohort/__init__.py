"""Cohorts: the calibrated synthetic MEDS generator, MEDS validation, task extraction and nested data scales."""
