"""The grid engine: resumable, idempotent execution of content-addressed jobs, locally or on Ray.

Declare jobs with ``make_job`` (ids are content hashes, so declaring the same work twice gives one job),
run them with ``execute`` (finished jobs are skipped; failures retried, then reported in
``ROOT/failures.json``), and rebuild result tables with ``collect``. See docs/grid.md.
"""

from rationale_sft.grid.execute import ExecutionReport, execute
from rationale_sft.grid.job import Job, collect, is_complete, job_id, job_states, make_job, order

__all__ = ["ExecutionReport", "Job", "collect", "execute", "is_complete", "job_id", "job_states", "make_job", "order"]
