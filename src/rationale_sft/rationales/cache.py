"""Content-addressed rationale cache shared by all teacher backends (one SQLite file, atomic commits).

Each finished item is committed in its own transaction, so a run killed at any moment keeps every item it
finished and none half-written; a re-run finds them by key and generates only the rest. The key covers
everything that determines a rationale: backend, model, generation parameters, spec version, subject,
prompt hash, style, mode and (in the conditioned and flipped modes only) the true label.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> k = cache_key("knowledge", "m", {"seed": 0}, "1", 7, "ab12", "freeform", "blind", True)
>>> k == cache_key("knowledge", "m", {"seed": 0}, "1", 7, "ab12", "freeform", "blind", False)  # blind: no label
True
>>> k == cache_key("knowledge", "m", {"seed": 0}, "2", 7, "ab12", "freeform", "blind", True)
False
>>> with RationaleCache(d / "c.sqlite") as c:
...     c.put(k, {"spec_version": "1", "text": "t", "conclusion": "No", "teacher_risk": None})
...     c.put(k, {"spec_version": "1", "text": "other", "conclusion": "Yes", "teacher_risk": 0.5})
...     c.get_many([k, "missing"])[k]["text"], len(c)
('t', 1)
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from rationale_sft.rundir import hash_text

_SCHEMA = """CREATE TABLE IF NOT EXISTS rationales (
    cache_key TEXT PRIMARY KEY, spec_version TEXT NOT NULL, record TEXT NOT NULL)"""


def cache_key(backend: str, model: str, params: dict, spec_version: str, subject_id: int,
              prompt_hash: str, style: str, mode: str, label: bool | None) -> str:
    """Content address of one rationale; the (true) label enters only in the modes that are told one."""
    parts = [backend, model, params, spec_version, int(subject_id), prompt_hash, style, mode,
             bool(label) if mode in ("conditioned", "flipped") else None]
    return hash_text(json.dumps(parts, sort_keys=True, separators=(",", ":")), 24)


class RationaleCache:
    """A key -> record store; records are JSON objects, the first write of a key wins."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # one connection used by the thread that owns the cache; backends hand results to that thread
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: every commit survives a killed process (not necessarily a power cut), at no fsync cost
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Commit one record (ignored when the key is already stored: no duplicates, no overwrite)."""
        self._db.execute("INSERT OR IGNORE INTO rationales VALUES (?, ?, ?)",
                         (key, str(record["spec_version"]), json.dumps(record, sort_keys=True)))

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        """Stored records for those of ``keys`` that are present."""
        found: dict[str, dict] = {}
        for start in range(0, len(keys), 500):  # SQLite bounds the number of parameters per query
            chunk = keys[start:start + 500]
            rows = self._db.execute(
                f"SELECT cache_key, record FROM rationales WHERE cache_key IN ({','.join('?' * len(chunk))})",
                chunk)
            found.update((k, json.loads(r)) for k, r in rows)
        return found

    def spec_versions(self) -> dict[str, int]:
        """Number of stored records per spec version (to tell users about stale entries)."""
        rows = self._db.execute("SELECT spec_version, COUNT(*) FROM rationales GROUP BY spec_version")
        return dict(rows.fetchall())

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM rationales").fetchone()[0])

    def close(self) -> None:
        """Close the database (all records are already committed)."""
        self._db.close()

    def __enter__(self) -> RationaleCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
