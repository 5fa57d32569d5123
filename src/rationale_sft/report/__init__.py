"""The experiment report: a pure function of a finished grid run directory."""
