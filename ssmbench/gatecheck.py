"""The regression gate's judgement, without pytest: which figures of a point it holds, the allowance of each,
the rows of its report (``pytest_ssmbench/gate.py`` runs it; ``ssmbench gate-allowances`` measures the
between-machine part).

- time (a prefill's call, a decode step, a throughput step): ``TIME_FLOOR`` + twice the baseline's own spread
  between rounds (capped at ``SPREAD_CAP``: a noisy baseline is said to be, not allowed to blind the gate) + the
  difference measured between two machines on unchanged code (``ALLOWANCES_FILE`` beside the baseline: 1.5x what
  two machines showed), or ``DEFAULT_MACHINES`` for a point it does not hold, said so;
- extra peak memory: ``MEMORY_FLOOR`` + that difference (a baseline of 0 bytes: up to ``ZERO_BYTES`` allowed);
- cache bytes, parameters and tokens generated: exactly;
- a point or figure the baseline holds and this run lacks (out of memory, skipped, deselected): a failure."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

TIME_FLOOR, MEMORY_FLOOR = 0.02, 0.01
SPREAD_FACTOR, SPREAD_CAP = 2.0, 0.10
DEFAULT_MACHINES = {"time": 0.10, "memory": 0.02}
MACHINE_MARGIN = 1.5
ZERO_BYTES = 1 << 20
ALLOWANCES_FILE = "gate-allowances.json"
EXACT = ("cache_bytes", "params", "tokens_seen", "tokens_seen_max")
REPORT_HEADER = "<!-- ssmbench gate report -->"


def selected(markexpr: str | None) -> bool:
    """Whether a ``-m`` expression selects the gate's points: true with only the ``gate`` mark set and false with
    none (``gate``, ``gate and quick``, ``gate or benchmark``; not ``not (gate)``, ``quick``). Evaluated as pytest
    evaluates it (``and``, ``or``, ``not``, parentheses); an expression it cannot read is not the gate."""
    tokens = re.findall(r"\(|\)|[^\s()]+", markexpr or "")
    if not tokens:
        return False

    def value(marks: set[str]) -> bool:
        words = [t if t in ("(", ")", "and", "or", "not") else str(t in marks) for t in tokens]
        return bool(eval(" ".join(words), {"__builtins__": {}}, {}))  # noqa: S307 -- only True/False/and/or/not

    try:
        return value({"gate"}) and not value(set())
    except SyntaxError:
        return False


def machine_allowances(storage: Path) -> tuple[dict | None, str]:
    """Between-machine allowances beside the baseline ({benchmark name: {figure: fraction}}, None where no file)
    and where they come from, in words. ValueError for an unreadable file."""
    path = storage / ALLOWANCES_FILE
    if not path.is_file():
        return None, (f"no {ALLOWANCES_FILE} in {storage}: between-machine allowance {DEFAULT_MACHINES['time']:.0%} "
                      f"time, {DEFAULT_MACHINES['memory']:.0%} memory (a default, not measured)")
    try:
        data = json.loads(path.read_text())
        points = data["points"]
        if not isinstance(points, dict) or not all(
                isinstance(v, dict) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                            and math.isfinite(x) and x >= 0 for x in v.values())
                for v in points.values()):
            raise ValueError("points: not {name: {figure: fraction >= 0}}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    return points, f"between-machine allowances from {path} ({data.get('measured', 'how: not said')})"


def figures(info: dict, median: float | None, gpu: bool) -> dict[str, tuple[float | None, float | None]]:
    """A point's gated figures: {figure: (value, relative spread between rounds or None)}."""
    found: dict[str, tuple[float | None, float | None]] = {}
    if gpu:
        time = median if info.get("kind") == "prefill" else info.get("decode_s_per_token")
        found["time"] = (time, info.get("rounds_spread"))
        found["memory"] = (info.get("extra_peak_bytes"), None)
    for key in EXACT:
        found[key] = (info.get(key), None)
    return found


@dataclass
class Row:
    name: str
    figure: str
    then: float | None
    now: float | None  # None: this run has no such point or figure
    allowance: float  # fraction; 0: exact
    parts: str

    @property
    def change(self) -> float:
        if self.now is None or self.then is None:
            return math.nan
        return (self.now - self.then) / self.then if self.then else (0.0 if self.now == self.then else math.inf)

    @property
    def failed(self) -> bool:
        if self.now is None:
            return True
        if self.allowance == 0:
            return self.now != self.then
        if not self.then:  # a baseline of nothing: a small absolute amount is noise, not a regression
            return self.now > ZERO_BYTES
        return self.change > self.allowance


def _allowance(figure: str, name: str, spread: float | None, machines: dict | None) -> tuple[float, str]:
    floor = TIME_FLOOR if figure == "time" else MEMORY_FLOOR
    measured = (machines or {}).get(name, {}).get(figure)
    between = DEFAULT_MACHINES[figure] if measured is None else measured
    said = "" if measured is not None else " (default: not measured for this point)" if machines else " (default)"
    own = SPREAD_FACTOR * spread if spread is not None and math.isfinite(spread) else 0.0
    capped = ""
    if own > SPREAD_CAP or (spread is not None and not math.isfinite(spread)):
        own, capped = SPREAD_CAP, f" (capped: the baseline's rounds spread {spread:.0%}; record it again)"
    return floor + own + between, f"floor {floor:.0%} + spread {own:.1%}{capped} + machines {between:.1%}{said}"


def compare(current: list[tuple[str, dict, float | None]], baseline: dict[str, dict], machines: dict | None,
            gpu: bool) -> list[Row]:
    """A row for every gated figure of every point the baseline holds. ``current``: (name, extra_info, median);
    ``baseline``: {name: saved benchmark}. A point or figure of the baseline this run lacks is a failed row."""
    rows = []
    mine = {name: (info, median) for name, info, median in current}
    for name, old in baseline.items():
        then_figs = figures(old.get("extra_info") or {}, (old.get("stats") or {}).get("median"), gpu)
        if name not in mine:
            rows.append(Row(name, "point", None, None, 0.0, "in the baseline, not measured by this run (out of "
                                                            "memory, skipped or deselected)"))
            continue
        now_figs = figures(mine[name][0], mine[name][1], gpu)
        for figure, (then, spread) in then_figs.items():
            if then is None:
                continue
            now = now_figs[figure][0]
            if figure in EXACT:
                rows.append(Row(name, figure, then, now, 0.0, "exact"))
                continue
            allowance, parts = _allowance(figure, name, spread, machines)
            rows.append(Row(name, figure, then, now, allowance, parts))
    return rows


def show(figure: str, value: float | None) -> str:
    if value is None:
        return "missing"
    if figure == "time":
        return f"{value * 1e3:.3f} ms"
    if figure in ("memory", "cache_bytes"):
        return f"{value / 1e6:.2f} MB"
    return f"{value:g}"


def markdown(rows: list[Row], notes: list[str]) -> str:
    lines = ["| point | figure | baseline | this run | change | allowance | verdict |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        allowance = "exact" if r.allowance == 0 else f"{r.allowance:.1%} ({r.parts})"
        lines.append(f"| {r.name} | {r.figure} | {show(r.figure, r.then)} | {show(r.figure, r.now)} | "
                     f"{r.change:+.1%} | {allowance} | {'REGRESSION' if r.failed else 'ok'} |")
    return "\n".join([REPORT_HEADER, "", *(f"- {n}" for n in notes), "", *(lines if rows else []), ""])
