"""The grid engine: resumable, idempotent execution of content-addressed jobs, locally or on Ray."""
