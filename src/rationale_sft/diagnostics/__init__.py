"""Diagnostics of the mechanism: token dilution, direct vs after-rationale scores, linear probes, matched errors."""
