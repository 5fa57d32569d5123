"""Content fingerprints of files and directories: each file's relative name, size and sha256.

A fingerprint says what an input *holds*, not where it lies, so replacing the files at the same path
changes it. Hashing large inputs on every plan would be slow, so a file's sha256 is cached by its absolute
path, size, mtime and ctime (``ctime`` cannot be set back by a user, so a rewrite that restores the mtime
is still seen) in a small sqlite database in the project's cache directory (``$RATIONALE_SFT_CACHE``,
else ``~/.cache/rationale-sft``, as for converted checkpoints). Where that database cannot be
opened, hashes are computed afresh every time: the cache only saves time, it never decides a result.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "a.txt").write_text("x")
>>> manifest(d)
{'a.txt': {'size': 1, 'sha256': '2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881'}}
>>> digest(d) == digest(d), len(digest(d))
(True, 16)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

CACHE_ENV = "RATIONALE_SFT_CACHE"
DB_NAME = "file-hashes.sqlite"


def sha256_file(path: str | Path) -> str:
    """Full sha256 (hex) of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def files_under(path: str | Path) -> list[Path]:
    """The files a fingerprint covers: ``path`` itself, or every non-hidden file below it, sorted."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"cannot fingerprint {path}: no such file or directory")
    return sorted(p for p in path.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))


def manifest(path: str | Path) -> dict[str, dict]:
    """``{relative name: {"size", "sha256"}}`` of every file of ``path`` (a file's own name for a file)."""
    path = Path(path)
    files = files_under(path)
    with _cache() as db:
        return {(f.name if f == path else f.relative_to(path).as_posix()): _entry(db, f) for f in files}


def digest(path: str | Path, length: int = 16) -> str:
    """Short hash of ``manifest(path)``: changes when any file's name or content changes."""
    canon = json.dumps(manifest(path), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:length]


def cache_path() -> Path:
    """Where the hash cache lives (see the module docstring)."""
    root = os.environ.get(CACHE_ENV)
    return (Path(root) if root else Path.home() / ".cache" / "rationale-sft") / DB_NAME


def _entry(db: sqlite3.Connection | None, f: Path) -> dict:
    st = f.stat()
    key = (str(f.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if db is not None:
        row = db.execute("SELECT sha256 FROM files WHERE path=? AND size=? AND mtime_ns=? AND ctime_ns=?",
                         key).fetchone()
        if row:
            return {"size": st.st_size, "sha256": row[0]}
    sha = sha256_file(f)
    if db is not None:
        with contextlib.suppress(sqlite3.Error):  # a read-only or busy cache costs time, never a result
            db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)", (*key, sha))
            db.commit()
    return {"size": st.st_size, "sha256": sha}


@contextlib.contextmanager
def _cache() -> Iterator[sqlite3.Connection | None]:
    try:
        path = cache_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=30)
        db.execute("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
                   "ctime_ns INTEGER, sha256 TEXT)")
    except (OSError, sqlite3.Error):
        yield None
        return
    try:
        yield db
    finally:
        db.close()
