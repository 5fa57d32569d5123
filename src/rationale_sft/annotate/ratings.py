"""Reading expert ratings from the HTML packet's JSON, the packet CSV or a Label Studio export, with validation.

Every file is normalised to rows ``rater, item_id, accuracy, grounding, relevance, comment, source``.
Unknown item ids, scores outside 1-5 and a rater rating the same item twice (in one file or across files)
raise a one-line ``InputError`` naming the file and the item.

>>> check_score("4", "f.csv", "R001", "accuracy")
4
>>> check_score("", "f.csv", "R001", "accuracy") is None
True
>>> check_score(6, "f.csv", "R001", "accuracy")
Traceback (most recent call last):
...
rationale_sft.errors.InputError: f.csv: item R001: accuracy score 6 is out of range; scores are whole numbers 1-5 (leave it empty if not rated)
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import polars as pl

from rationale_sft.config.annotate import CRITERIA, ImportConfig
from rationale_sft.errors import InputError
from rationale_sft.rundir import read_json, run_stage, write_json, write_parquet, write_text

RATING_SCHEMA = {"rater": pl.String, "item_id": pl.String, **{c: pl.Int64 for c in CRITERIA},
                 "comment": pl.String, "source": pl.String}


def read_ratings(files: list[str | Path], packet_ids: set[str], packet_id: str) -> list[dict]:
    """All rating rows of ``files``, validated against the packet's item ids."""
    rows: list[dict] = []
    seen: dict[tuple[str, str], str] = {}
    spelling: dict[str, str] = {}  # one rater, however the name is capitalised or spaced: its first spelling
    for path in map(Path, files):
        for row in _read_one(path, packet_id):
            row["rater"] = spelling.setdefault(rater_key(row["rater"]), row["rater"])
            _validate(row, path, packet_ids, seen)
            rows.append(row)
    if not rows:
        raise InputError(f"no ratings found in {', '.join(map(str, files))}; were the files saved after rating?")
    return rows


def rater_key(name: str) -> str:
    """Names that differ only in case or spacing are one rater.

    >>> rater_key(" Ann  Lee ") == rater_key("ann lee")
    True
    """
    return " ".join(name.split()).casefold()


def _read_one(path: Path, packet_id: str) -> list[dict]:
    if not path.is_file():
        raise InputError(f"ratings file not found: {path}")
    if path.suffix.lower() == ".csv":
        return read_csv(path)
    try:
        data = json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc}); pass the file saved by packet.html, the packet CSV, "
                         "or a Label Studio JSON export") from None
    if isinstance(data, dict) and "ratings" in data:
        return read_html_json(data, path, packet_id)
    if isinstance(data, list):
        return read_labelstudio(data, path)
    raise InputError(f"{path}: unrecognised ratings JSON; expected the packet.html save file (with 'ratings') "
                     "or a Label Studio export (a list of tasks)")


def read_html_json(data: dict, path: Path, packet_id: str) -> list[dict]:
    """Rows of a ratings file saved by ``packet.html``."""
    if data.get("packet_id") != packet_id:
        raise InputError(f"{path}: ratings are for packet {data.get('packet_id')!r}, not {packet_id!r}; "
                         "import them with the packet directory they were exported to")
    rater = str(data.get("rater") or "").strip()
    if not rater:
        raise InputError(f"{path}: no rater name; ask the rater to enter a name and save again")
    return [_row(rater, r.get("item_id"), r, r.get("comment"), path) for r in data["ratings"]]


def read_csv(path: Path) -> list[dict]:
    """Rows of a filled-in ``packet.csv`` (rows with no scores and no comment are unrated and skipped)."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, strict=True)  # strict: a file cut inside a quoted field is an error
        try:
            return _csv_rows(reader, path)
        except csv.Error as exc:
            why = ("the file ends inside a quoted field; it looks truncated: save or export it again"
                   if "unexpected end of data" in str(exc) else f"not valid CSV ({exc})")
            raise InputError(f"{path}: line {reader.line_num}: {why}") from None


def _csv_rows(reader: csv.DictReader, path: Path) -> list[dict]:
    missing = [c for c in ("item_id", "rater", *CRITERIA) if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; start from the exported packet.csv")
    rows = []
    for rec in reader:
        line = reader.line_num
        if not any((rec.get(c) or "").strip() for c in (*CRITERIA, "comment")):
            continue
        rater = (rec.get("rater") or "").strip()
        if not rater:
            raise InputError(f"{path}: line {line} (item {rec['item_id']}): the rater column is empty; "
                             "write the rater's name in every rated row")
        rows.append(_row(rater, rec["item_id"], rec, rec.get("comment"), path))
    return rows


def read_labelstudio(tasks: list, path: Path) -> list[dict]:
    """Rows of a Label Studio JSON export (one per submitted, non-cancelled annotation)."""
    rows = []
    for task in tasks:
        item_id = (task.get("data") or {}).get("item_id") if isinstance(task, dict) else None
        for ann in (task.get("annotations") or []) if isinstance(task, dict) else []:
            if ann.get("was_cancelled"):
                continue
            scores, comment = {}, ""
            for res in ann.get("result") or []:
                value = res.get("value") or {}
                if res.get("from_name") in CRITERIA:
                    scores[res["from_name"]] = value.get("rating")
                elif res.get("from_name") == "comment":
                    comment = " ".join(value.get("text") or [])
            rows.append(_row(_ls_rater(ann), item_id, scores, comment, path))
    return rows


def _ls_rater(ann: dict) -> str:
    who = ann.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return f"labelstudio:{who}"


def _row(rater: str, item_id: object, scores: dict, comment: object, path: Path) -> dict:
    item = str(item_id or "").strip()
    return {"rater": rater, "item_id": item,
            **{c: check_score(scores.get(c), path, item, c) for c in CRITERIA},
            "comment": str(comment or ""), "source": str(path)}


def check_score(value: object, path: str | Path, item: str, criterion: str) -> int | None:
    """A score as int 1-5, None when empty; InputError naming file, item and criterion otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        score = float(value)
    except (TypeError, ValueError):
        score = float("nan")
    if isinstance(value, bool) or not score.is_integer() or not 1 <= score <= 5:
        raise InputError(f"{path}: item {item}: {criterion} score {value} is out of range; scores are "
                         "whole numbers 1-5 (leave it empty if not rated)")
    return int(score)


def _validate(row: dict, path: Path, packet_ids: set[str], seen: dict) -> None:
    if row["item_id"] not in packet_ids:
        raise InputError(f"{path}: unknown item id {row['item_id']!r} (rater {row['rater']}); the packet has "
                         f"items like {min(packet_ids)}; are these ratings for another packet?")
    key = (row["rater"], row["item_id"])
    if key in seen:
        where = "twice in this file" if seen[key] == str(path) else f"also in {seen[key]}"
        raise InputError(f"{path}: item {row['item_id']}: rater {row['rater']!r} rated it {where}; "
                         "keep one rating per rater and item")
    seen[key] = str(path)


def import_ratings(cfg: ImportConfig, packet_dir: str | Path, files: list[str | Path], out_dir: str | Path) -> Path:
    """Validate and unblind ratings; write ratings.parquet, agreement.json and agreement.md into ``out_dir``."""
    from rationale_sft.annotate.agreement import summarise, to_markdown
    from rationale_sft.annotate.packet import ID_MAP

    id_map_path = Path(packet_dir) / ID_MAP
    if not id_map_path.is_file():
        raise InputError(f"{id_map_path} not found; pass the directory written by `rationale-sft annotate export`")
    id_map = read_json(id_map_path)

    def work(d: Path) -> dict:
        rows = read_ratings(files, set(id_map["items"]), id_map["packet_id"])
        private = pl.DataFrame([{"item_id": k, **v} for k, v in id_map["items"].items()])
        ratings = pl.DataFrame(rows, schema=RATING_SCHEMA).join(private, on="item_id", how="left")
        summary = summarise(ratings, cfg)
        write_parquet(ratings, d / "ratings.parquet")
        write_json(d / "agreement.json", summary)
        write_text(d / "agreement.md", to_markdown(summary))
        return {"ratings": {"n": ratings.height, "packet_id": id_map["packet_id"]}}

    inputs = {"id_map": id_map_path, **{f"ratings_{i}": Path(f) for i, f in enumerate(files)}}
    run_stage(out_dir, work, cfg=cfg, seeds={"seed": cfg.seed}, inputs=inputs, force=True)
    return Path(out_dir) / "agreement.json"
