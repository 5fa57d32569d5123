"""Statistics: pure functions of per-subject prediction tables with explicit random generators."""
