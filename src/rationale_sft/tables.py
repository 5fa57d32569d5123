"""Reading parquet tables that users and earlier stages wrote: a damaged file is a one-line error naming it.

>>> import tempfile, pathlib
>>> bad = pathlib.Path(tempfile.mkdtemp()) / "scores.parquet"
>>> _ = bad.write_bytes(b"not parquet at all")
>>> read_parquet(bad)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
rationale_sft.errors.InputError: .../scores.parquet: not a readable parquet file (parquet: File out of specification: ...); it is damaged or truncated: re-run the stage that wrote it (or restore it)
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa

from rationale_sft.errors import InputError


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pl.DataFrame:
    """``pl.read_parquet``, except that an unreadable file raises an InputError naming it and the fix."""
    try:
        return pl.read_parquet(path, columns=columns)
    except (pl.exceptions.PolarsError, pa.ArrowException, OSError) as exc:
        if isinstance(exc, FileNotFoundError) or not Path(path).is_file():
            raise
        if isinstance(exc, pl.exceptions.ColumnNotFoundError):
            raise InputError(f"{path}: missing column(s) {exc} (asked for {', '.join(columns or [])})") from None
        raise unreadable(path, exc) from None


def unreadable(path: str | Path, exc: BaseException) -> InputError:
    """The error for a parquet file that exists but cannot be decoded."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InputError(f"{path}: not a readable parquet file ({detail}); it is damaged or truncated: "
                      "re-run the stage that wrote it (or restore it)")
