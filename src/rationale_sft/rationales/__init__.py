"""Teacher rationales: prompt specs, the offline knowledge teacher, generation backends, quality checks."""
