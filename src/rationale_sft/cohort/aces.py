"""Translate an ACES task configuration (es-aces; MEDS-DEV tasks are ACES configs) into a task (TaskConfig).

Only configs whose labels a TaskConfig reproduces exactly are translated; every other construct is an
InputError naming it. The supported shape (docs/task.md, "ACES task configs"): a trigger predicate of one
exact code; a window holding ``index_timestamp`` at the trigger; a label window ``(trigger, trigger + D]``;
optionally a window ``[record start, trigger]`` with ``has: {<label predicate>: "(None, 0)"}``. Predicates
are exact codes, ``any:`` lists, ``regex:`` patterns that are anchored prefix alternations, or ``or(...)`` of
those. ACES knows no censoring, administrative end or follow-up requirement, so the task it becomes has
none (``censor_codes: []``, ``drop_censored: false``, ``require_followup: false``), and since ACES labels
every trigger event, a subject whose trigger code occurs at several times fails (``repeated_trigger: error``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from rationale_sft.cohort.extract import YEAR_US
from rationale_sft.errors import InputError

TOP_KEYS = ("predicates", "trigger", "windows", "description", "metadata")
WINDOW_KEYS = ("start", "end", "start_inclusive", "end_inclusive", "has", "label", "index_timestamp")
UNITS_US = {"weeks": 7 * 86_400_000_000, "days": 86_400_000_000, "hours": 3_600_000_000, "mins": 60_000_000,
            "secs": 1_000_000}
_UNIT_WORDS = {"weeks": r"w|wks?|weeks?", "days": r"d|dys?|days?", "hours": r"h|hrs?|hours?",
               "mins": r"m|mins?|minutes?", "secs": r"s|secs?|seconds?"}
# ACES parses offsets with pytimeparse: each unit at most once, largest first, optionally separated by , or /
_DURATION = re.compile(r"\s*" + "".join(rf"(?:(?P<{u}>[\d.]+)\s*(?:{w})\s*(?:[,/]\s*)?)?"
                                        for u, w in _UNIT_WORDS.items()) + r"\s*$", re.I)
PREFIX_LIMIT = 1000


def is_aces(data: dict) -> bool:
    """Whether a task YAML mapping is an ACES config (it has predicates, trigger and windows).

    >>> is_aces({"predicates": {}, "trigger": "x", "windows": {}}), is_aces({"trigger_code": "X"})
    (True, False)
    """
    return {"predicates", "trigger", "windows"} <= set(data)


def duration_us(text: str, where: str) -> int:
    """An ACES time offset (pytimeparse: weeks, days, hours, minutes, seconds) in microseconds.

    >>> duration_us("1826.25 days", "w"), duration_us("1 day 12h", "w"), duration_us("30d", "w")
    (157788000000000, 129600000000, 2592000000000)
    >>> duration_us("5 years", "windows.target.end")
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: windows.target.end: cannot read the duration '5 years'; ACES (pytimeparse) knows weeks, days, hours, minutes and seconds, not years or months: write 5 years of 365.25 days as '1826.25 days'
    """
    m = _DURATION.match(text or "")
    if not m or not any(m.groupdict().values()):
        raise InputError(f"{where}: cannot read the duration {text!r}; ACES (pytimeparse) knows weeks, days, "
                         "hours, minutes and seconds, not years or months: write 5 years of 365.25 days as "
                         "'1826.25 days'")
    try:
        total = sum(Decimal(v) * UNITS_US[u] for u, v in m.groupdict().items() if v)
    except ArithmeticError:
        raise InputError(f"{where}: {text!r} holds a number that is not a decimal") from None
    return int(total.to_integral_value())


def regex_prefixes(pattern: str, where: str) -> list[str]:
    """The code prefixes an anchored prefix-alternation regex matches (ACES matches with ``str.contains``).

    >>> regex_prefixes("^ICD10//(F0[0-3]|G30)", "p")
    ['ICD10//F00', 'ICD10//F01', 'ICD10//F02', 'ICD10//F03', 'ICD10//G30']
    >>> regex_prefixes(r"^(?:ICD9CM//290\\.|ICD10//F01).*", "p")
    ['ICD9CM//290.', 'ICD10//F01']
    >>> regex_prefixes("ICD10//G30", "predicates.adrd.code.regex")
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: predicates.adrd.code.regex: 'ICD10//G30' is not anchored with ^; ACES matches a regex anywhere in the code, which a code prefix cannot express; write '^ICD10//G30'
    >>> regex_prefixes("^ICD10//G3.", "p")
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: p: regex '^ICD10//G3.' uses '.' at position 10; only literals, [...] character sets, (a|b) groups and a final .* translate to code prefixes (list the codes with `any:` or spell out the prefixes)
    """
    if not pattern.startswith("^"):
        raise InputError(f"{where}: {pattern!r} is not anchored with ^; ACES matches a regex anywhere in the code, "
                         f"which a code prefix cannot express; write '^{pattern}'")
    body = pattern[1:-2] if pattern.endswith(".*") and not pattern.endswith("\\.*") else pattern[1:]
    parser = _PrefixParser(body, pattern, where)
    out = parser.alternation()
    if parser.pos != len(body):
        parser.fail()
    out = list(dict.fromkeys(out))
    assert all(re.match(pattern, p) for p in out)
    return out


class _PrefixParser:
    """Recursive descent over literals, escapes, [sets] and (alternations): each yields a list of strings."""

    def __init__(self, body: str, pattern: str, where: str):
        self.body, self.pattern, self.where, self.pos = body, pattern, where, 0

    def fail(self):
        ch = self.body[self.pos] if self.pos < len(self.body) else "end"
        raise InputError(f"{self.where}: regex {self.pattern!r} uses {ch!r} at position {self.pos + 1}; only "
                         "literals, [...] character sets, (a|b) groups and a final .* translate to code prefixes "
                         "(list the codes with `any:` or spell out the prefixes)")

    def alternation(self) -> list[str]:
        out = self.sequence()
        while self.pos < len(self.body) and self.body[self.pos] == "|":
            self.pos += 1
            out += self.sequence()
        return out

    def sequence(self) -> list[str]:
        out = [""]
        while self.pos < len(self.body) and self.body[self.pos] not in "|)":
            tails = self.atom()
            out = [a + b for a in out for b in tails]
            if len(out) > PREFIX_LIMIT:
                raise InputError(f"{self.where}: regex {self.pattern!r} expands to more than {PREFIX_LIMIT} prefixes")
        return out

    def atom(self) -> list[str]:
        ch = self.body[self.pos]
        if ch == "(":
            self.pos += 3 if self.body.startswith("(?:", self.pos) else 1
            out = self.alternation()
            if self.pos >= len(self.body) or self.body[self.pos] != ")":
                self.fail()
            self.pos += 1
            return out
        if ch == "[":
            return self.char_set()
        if ch == "\\" and self.pos + 1 < len(self.body) and not self.body[self.pos + 1].isalnum():
            self.pos += 2
            return [self.body[self.pos - 1]]
        if ch in ".*+?{}^$\\]":
            self.fail()
        self.pos += 1
        return [ch]

    def char_set(self) -> list[str]:
        end = self.body.find("]", self.pos)
        inner = self.body[self.pos + 1:end] if end > 0 else ""
        if not inner or inner.startswith("^") or "\\" in inner:
            self.fail()
        chars, i = [], 0
        while i < len(inner):
            if i + 2 < len(inner) and inner[i + 1] == "-":
                chars += [chr(c) for c in range(ord(inner[i]), ord(inner[i + 2]) + 1)]
                i += 3
            else:
                chars.append(inner[i])
                i += 1
        self.pos = end + 1
        return list(dict.fromkeys(chars))


@dataclass(frozen=True)
class Codes:
    """What a predicate matches: exact codes and code prefixes."""

    exact: tuple[str, ...] = ()
    "Codes matched exactly."
    prefixes: tuple[str, ...] = ()
    "Code prefixes."


def predicate_codes(name: str, predicates: dict, seen: tuple = ()) -> Codes:
    """Resolve a predicate (plain, or ``or(...)`` of predicates) to the codes it matches.

    >>> preds = {"a": {"code": "X//1"}, "b": {"code": {"regex": "^Y//(1|2)"}}, "c": {"code": {"any": ["Z", "W"]}},
    ...          "abc": {"expr": "or(a, b, c)"}}
    >>> predicate_codes("abc", preds)
    Codes(exact=('X//1', 'Z', 'W'), prefixes=('Y//1', 'Y//2'))
    >>> predicate_codes("high", {"high": {"code": "LAB//LDL", "value_min": 4.0}})
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: predicates.high: value_min is not supported; rationale-sft tasks match codes only (no numeric thresholds, other columns or static predicates): drop it or compute the labels with ACES and pass them with --labels
    """
    where = f"predicates.{name}"
    if name not in predicates:
        raise InputError(f"{where}: not defined; defined predicates: {', '.join(predicates) or 'none'} "
                         "(ACES special predicates such as _ANY_EVENT or _RECORD_END are not supported)")
    if name in seen:
        raise InputError(f"{where}: refers to itself through {' -> '.join(seen)}")
    spec = predicates[name]
    if not isinstance(spec, dict) or ("code" in spec) == ("expr" in spec):
        raise InputError(f"{where}: must be a mapping with either code: or expr:, got {spec!r}")
    extra = sorted(set(spec) - {"code", "expr"})
    if extra:
        raise InputError(f"{where}: {extra[0]} is not supported; rationale-sft tasks match codes only (no numeric "
                         "thresholds, other columns or static predicates): drop it or compute the labels with ACES "
                         "and pass them with --labels")
    if "expr" in spec:
        return _derived_codes(name, str(spec["expr"]).strip(), predicates, (*seen, name))
    return _plain_codes(spec["code"], where)


def _plain_codes(code, where: str) -> Codes:
    if isinstance(code, str) and code:
        return Codes(exact=(code,))
    if isinstance(code, dict) and len(code) == 1 and "any" in code:
        if not isinstance(code["any"], list) or not code["any"] or not all(isinstance(c, str) and c for c in code["any"]):
            raise InputError(f"{where}.code.any: must be a non-empty list of codes, got {code['any']!r}")
        return Codes(exact=tuple(code["any"]))
    if isinstance(code, dict) and len(code) == 1 and "regex" in code:
        if not isinstance(code["regex"], str) or not code["regex"]:
            raise InputError(f"{where}.code.regex: must be a non-empty regex, got {code['regex']!r}")
        return Codes(prefixes=tuple(regex_prefixes(code["regex"], f"{where}.code.regex")))
    raise InputError(f"{where}.code: must be a code, {{any: [codes]}} or {{regex: pattern}}, got {code!r}")


def _derived_codes(name: str, expr: str, predicates: dict, seen: tuple) -> Codes:
    m = re.fullmatch(r"(and|or)\((.*)\)", expr)
    if not m:
        raise InputError(f"predicates.{name}.expr: {expr!r} must be or(p1, p2, ...)")
    if m.group(1) == "and":
        raise InputError(f"predicates.{name}.expr: and(...) holds where all predicates occur at the same time, "
                         "which code lists cannot express; only or(...) is supported")
    parts = [predicate_codes(p.strip(), predicates, seen) for p in m.group(2).split(",")]
    return Codes(exact=tuple(dict.fromkeys(c for p in parts for c in p.exact)),
                 prefixes=tuple(dict.fromkeys(c for p in parts for c in p.prefixes)))


@dataclass(frozen=True)
class Bound:
    """A window boundary as an offset from the trigger (None: the start or end of the record)."""

    offset_us: int | None
    "Microseconds after the trigger; None for the record's start (a start) or end (an end)."
    inclusive: bool
    "Whether an event exactly at the boundary is in the window."


def _parse_ref(text: str, where: str) -> tuple[str, int]:
    """``trigger``, ``<window>.start|end``, ``start`` or ``end``, plus or minus an offset -> (reference, µs)."""
    if "->" in text or "<-" in text:
        raise InputError(f"{where}: {text!r} bounds a window by the next or previous event of a predicate, which "
                         "depends on each subject's data; only fixed offsets (trigger + 30 days) are supported")
    m = re.fullmatch(r"\s*([\w.]+)\s*(?:([+-])\s*(.+?))?\s*", text)
    if not m:
        raise InputError(f"{where}: cannot read the boundary {text!r} (e.g. trigger, input.end, start + 1826.25 days)")
    offset = duration_us(m.group(3), where) if m.group(3) else 0
    return m.group(1), -offset if m.group(2) == "-" else offset


def resolve_windows(windows: dict) -> dict[str, tuple[Bound, Bound]]:
    """Each window's (start, end) as offsets from the trigger event.

    >>> w = {"input": {"start": None, "end": "trigger", "start_inclusive": True, "end_inclusive": True},
    ...      "target": {"start": "input.end", "end": "start + 2 days", "start_inclusive": False,
    ...                 "end_inclusive": True}}
    >>> resolve_windows(w)["target"]
    (Bound(offset_us=0, inclusive=False), Bound(offset_us=172800000000, inclusive=True))
    """
    parsed, out = {}, {}
    for name, spec in windows.items():
        where = f"windows.{name}"
        if not isinstance(spec, dict):
            raise InputError(f"{where}: must be a mapping with start, end, start_inclusive, end_inclusive")
        unknown = sorted(set(spec) - set(WINDOW_KEYS))
        if unknown:
            raise InputError(f"{where}: unknown key {unknown[0]!r}; ACES windows have {', '.join(WINDOW_KEYS)}")
        for key in ("start_inclusive", "end_inclusive"):
            if not isinstance(spec.get(key), bool):
                raise InputError(f"{where}.{key}: must be true or false, got {spec.get(key)!r}")
        parsed[name] = {side: None if spec.get(side) is None else _parse_ref(str(spec[side]), f"{where}.{side}")
                        for side in ("start", "end")}
    for _ in range(len(windows) + 1):
        for name in windows:
            if name not in out:
                bounds = _resolve_one(name, parsed[name], windows[name], out)
                if bounds is not None:
                    out[name] = bounds
    missing = [n for n in windows if n not in out]
    if missing:
        raise InputError(f"windows.{missing[0]}: its boundaries never lead back to the trigger "
                         "(reference trigger, another window's start/end, or this window's own start/end)")
    return out


def _resolve_one(name: str, refs: dict, spec: dict, known: dict) -> tuple[Bound, Bound] | None:
    """Offsets of one window once the window it references is known; None while it is not."""
    where = f"windows.{name}"

    def external(ref: str, offset: int) -> int | None:
        if ref == "trigger":
            return offset
        win, _, side = ref.partition(".")
        if side not in ("start", "end"):
            raise InputError(f"{where}: reference {ref!r} must be trigger, start, end or <window>.start/.end")
        if win not in known:
            return None
        base = known[win][0 if side == "start" else 1].offset_us
        if base is None:
            raise InputError(f"{where}: references {ref}, which is the record's start or end, not a fixed time")
        return base + offset

    start, end = refs["start"], refs["end"]
    if start is None and end is None:
        raise InputError(f"{where}: start and end are both null (the whole record); ACES refuses that too")
    if end is not None and end[0] == "start" and start is not None and start[0] == "end":
        raise InputError(f"{where}: start and end reference each other")
    if (end is not None and end[0] == "start" and start is None) or (start is not None and start[0] == "end"
                                                                     and end is None):
        raise InputError(f"{where}: a null boundary leaves the other one nothing to reference; ACES refuses that too")
    if end is not None and end[0] == "start":
        s = external(*start)
        if s is None:
            return None
        e = s + end[1]
    elif start is not None and start[0] == "end":
        e = external(*end)
        if e is None:
            return None
        s = e + start[1]
    else:
        s = external(*start) if start is not None else None
        e = external(*end) if end is not None else None
        if (start is not None and s is None) or (end is not None and e is None):
            return None
        if start is not None and end is not None:
            raise InputError(f"{where}: exactly one of start and end must reference the other (e.g. end: start + "
                             "30 days); ACES refuses two external references")
    return Bound(s, spec["start_inclusive"]), Bound(e, spec["end_inclusive"])


def _constraint(value, where: str) -> tuple[int | None, int | None]:
    """``"(None, 0)"`` (ACES's string form) or a two-item list -> (min, max)."""
    items = [str(v).strip() for v in value] if isinstance(value, (list, tuple)) \
        else str(value).strip().strip("()").split(",")
    try:
        lo, hi = (None if v.strip() in ("None", "null", "") else int(v) for v in items)
    except ValueError:
        raise InputError(f"{where}: must look like '(min, max)' with integers or None, got {value!r}") from None
    return lo, hi


def translate(data: dict, source: str | Path) -> dict:
    """The TaskConfig mapping that labels exactly as the ACES config ``data`` (read from ``source``) does."""
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise InputError(f"{source}: ACES key {unknown[0]!r} is not supported (static predicates, patient "
                         f"demographics); supported keys: {', '.join(TOP_KEYS)}")
    predicates, windows = data["predicates"], data["windows"]
    if not isinstance(predicates, dict) or not isinstance(windows, dict) or not isinstance(data["trigger"], str):
        raise InputError(f"{source}: predicates and windows must be mappings and trigger a predicate name")
    trigger = predicate_codes(data["trigger"], predicates)
    if trigger.prefixes or len(trigger.exact) != 1:
        raise InputError(f"{source}: trigger {data['trigger']!r} must be a predicate of exactly one code (code: X); "
                         f"it matches {list(trigger.exact) + [p + '*' for p in trigger.prefixes]}")
    bounds = resolve_windows(windows)
    _check_index(windows, bounds, source)
    label_window, outcome, horizon_us = _label_window(windows, bounds, predicates, source)
    prior = _prior_window(windows, bounds, predicates, outcome, label_window, source)
    horizon = horizon_us / YEAR_US
    assert round(horizon * YEAR_US) == horizon_us
    name = Path(source).name.removesuffix(".yaml").removesuffix(".yml")
    return {"name": name, "trigger_code": trigger.exact[0], "horizon_years": horizon,
            "outcome_prefixes": list(outcome.prefixes), "outcome_codes": list(outcome.exact),
            "exclude_prior_outcome": prior, "censor_codes": [], "data_end": None, "drop_censored": False,
            "require_followup": False, "repeated_trigger": "error"}


def _only(windows: dict, key: str, source) -> str:
    names = [n for n, w in windows.items() if w.get(key) is not None]
    if len(names) != 1:
        raise InputError(f"{source}: exactly one window must set {key} (found {names or 'none'})")
    return names[0]


def _check_index(windows: dict, bounds: dict, source) -> None:
    name = _only(windows, "index_timestamp", source)
    side = windows[name]["index_timestamp"]
    if side not in ("start", "end"):
        raise InputError(f"windows.{name}.index_timestamp: must be start or end, got {side!r}")
    if bounds[name][0 if side == "start" else 1].offset_us != 0:
        raise InputError(f"windows.{name}.index_timestamp: the prediction time must be the trigger time "
                         f"(the {side} of {name} is not); move index_timestamp to a boundary at the trigger")


def _label_window(windows: dict, bounds: dict, predicates: dict, source) -> tuple[str, Codes, int]:
    name = _only(windows, "label", source)
    start, end = bounds[name]
    where = f"windows.{name}"
    if start.offset_us != 0:
        raise InputError(f"{where}: the label window must start at the trigger (a gap or lookback before the "
                         "outcome window cannot be expressed); set start: trigger or start: <input>.end")
    if start.inclusive:
        raise InputError(f"{where}: start_inclusive: true counts an outcome exactly at the trigger as a case; "
                         "rationale-sft counts it as prior (the window is (prediction_time, +horizon]): set "
                         "start_inclusive: false")
    if end.offset_us is None or end.offset_us <= 0 or not end.inclusive:
        raise InputError(f"{where}: the label window must end a fixed time after its start, inclusive "
                         "(end: start + 1826.25 days, end_inclusive: true)")
    if windows[name].get("has"):
        _refuse_constraint(name, next(iter(windows[name]["has"])), windows[name]["has"], True)
    return name, predicate_codes(windows[name]["label"], predicates), end.offset_us


def _prior_window(windows: dict, bounds: dict, predicates: dict, outcome: Codes, label_window: str, source) -> bool:
    """Whether a window excludes subjects with the outcome at or before the trigger (exclude_prior_outcome)."""
    prior = False
    for name, spec in windows.items():
        for pred, value in (spec.get("has") or {}).items():
            where = f"windows.{name}.has.{pred}"
            codes = predicate_codes(pred, predicates) if pred in predicates else None
            same = codes is not None and (set(codes.exact), set(codes.prefixes)) == (set(outcome.exact),
                                                                                     set(outcome.prefixes))
            if name == label_window or not same or _constraint(value, where) != (None, 0):
                _refuse_constraint(name, pred, spec["has"], name == label_window)
            start, end = bounds[name]
            if start.offset_us is not None or end.offset_us != 0:
                raise InputError(f"{where}: the prior-outcome window must run from the record start (start: null) "
                                 "to the trigger; a limited lookback cannot be expressed")
            if not end.inclusive:
                raise InputError(f"{where}: end_inclusive: false keeps a subject with the outcome exactly at the "
                                 "trigger, and the label window starts after it; rationale-sft counts that outcome "
                                 "as prior: set end_inclusive: true")
            prior = True
    return prior


def _refuse_constraint(window: str, pred: str, has: dict, in_label_window: bool) -> None:
    where = f"windows.{window}.has.{pred}"
    if in_label_window:
        raise InputError(f"{where}: {has[pred]} in the label window drops every subject it fails, cases "
                         "included (e.g. death: (None, 0) drops everyone who died within the horizon, even those "
                         "diagnosed before dying); rationale-sft's drop_censored keeps cases, so this is not "
                         "translated: remove the constraint, or compute the labels with ACES and pass them with "
                         "--labels")
    raise InputError(f"{where}: only has: {{<label predicate>: \"(None, 0)\"}} on a window from the record start "
                     f"to the trigger (exclude prior outcomes) is supported, got {has[pred]!r}; remove it, or "
                     "compute the labels with ACES and pass them with --labels")
