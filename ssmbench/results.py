"""The benchmark points of a run: kept in memory and written atomically after every point (so an
interrupted sweep keeps what it measured), then fitted (log-log slopes), compared (crossover contexts) and
rendered (terminal table, markdown, plots)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from .point import NATIVE, SCHEMA_VERSION, SUITE_GRAPH, TRANSFORMERS_EAGER, TRANSFORMERS_STATIC, Point
from .safeio import (  # noqa: F401
    UnsafeOutput,
    atomic_write_bytes,
    atomic_write_text,
    claim_report_folder,
    in_code_block,
    not_regular,
    open_lock,
    unique_path,
)
from .safeio import md as md_text


def is_points_file(data: Any) -> bool:
    """A results file's shape: a JSON object with a list of points (any schema version)."""
    return isinstance(data, dict) and isinstance(data.get("points"), list)


class NotAPointsFile(UnsafeOutput):
    pass


def check_results_path(path: Path) -> str | None:
    """Why a run may not write its points to ``path`` (None: it may): not a regular file (a device node, a FIFO,
    a link), or an existing file that is not a points file (a truncated one, a pytest-benchmark baseline, notes
    given by a typo), which would be lost."""
    why = not_regular(path)
    if why or not path.exists():
        return why
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return f"{path} exists and is not a points file ({type(exc).__name__}): it would be lost; move it or " \
               "name another file"
    if not is_points_file(data):
        return f"{path} exists and is not a points file (no list of points): it would be lost; move it or name " \
               "another file"
    return None


@dataclass
class ResultStore:
    """A run's points, in memory and in a results file. Several processes of one run (xdist workers, sharing
    ``run``) merge their points in the file under a lock, each replacing only its own (``writer``). A file
    another run has claimed since this one last wrote is never overwritten: this run's points go beside it,
    in ``<name>.<run>.json``, and ``moved_to`` says where. A file an earlier run left there is replaced, its
    content kept first as ``<name>.<its run>.previous`` (a name no other backup holds: every earlier run is kept;
    ``replaced``: how many points it held and where they went; no ``.json`` suffix, so a folder's
    ``*points*.json`` never reads the old run as this one's). A file that is not a points file, or a write that
    fails (a full disk), is never reported as written: ``write_error`` says why, and no later point tries again."""

    path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    points: list[Point] = field(default_factory=list)
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    writer: str = field(default_factory=lambda: f"pid{os.getpid()}")
    moved_to: Path | None = None
    replaced: tuple[int, Path] | None = None
    write_error: str | None = None

    def add(self, point: Point) -> None:
        self.points.append(point)
        if self.path is not None and self.write_error is None:
            try:
                self._write()
            except (OSError, UnsafeOutput) as exc:
                self.write_error = f"{type(exc).__name__}: {exc}"
                warnings.warn(f"ssmbench: points not written to {self.moved_to or self.path}: {self.write_error}; "
                              f"no further point is written (the summary still shows them)", stacklevel=2)

    @property
    def written_to(self) -> Path | None:
        """Where this run's points are, or None where nothing was written."""
        if self.path is None or self.write_error is not None or not self._written:
            return None
        return self.moved_to or self.path

    def _write(self) -> None:
        path = self.moved_to or self.path
        why = not_regular(path)
        if why:
            raise UnsafeOutput(why)
        with _locked(path):
            current = _read_json(path)
            if path.exists() and not is_points_file(current):
                raise NotAPointsFile(check_results_path(path) or f"{path} is not a points file")
            others: list[dict] = []
            if current is not None and current.get("run") == self.run:
                others = [p for p in current.get("points", []) if p.get("writer") != self.writer]
            elif current is not None and current.get("run") is not None and self._written and not self.moved_to:
                # Another run took the file since this one wrote to it: keep both, say where this one went.
                self.moved_to = path.with_name(f"{path.stem}.{self.run}{path.suffix}")
                return self._write()
            elif current is not None and not self._written and current.get("points"):
                # An earlier run's file: its points kept beside it, under a name of their own, before this run's
                # replace them.
                earlier = re.sub(r"[^A-Za-z0-9_-]", "", str(current.get("run") or "")) or "earlier"
                backup = unique_path(path.parent, f"{path.name}.{earlier}", ".previous")
                atomic_write_bytes(backup, path.read_bytes())
                self.replaced = (len(current["points"]), backup)
            mine = [p.to_json() | {"writer": self.writer} for p in self.points]
            atomic_write_text(path, json.dumps({"schema": SCHEMA_VERSION, "run": self.run, "meta": self.meta,
                                                "points": others + mine}, indent=1))
        self._written = True

    _written: bool = field(default=False, init=False, repr=False, compare=False)

    @classmethod
    def read(cls, path: Path) -> "ResultStore":
        """A results file of any schema version, validated: every point typed, its figures finite numbers in
        range, no point twice (``InvalidPoints`` names the file, the point and the field)."""
        data = json.loads(Path(path).read_text())
        if not is_points_file(data):
            raise InvalidPoints(f"{path}: not a points file (no list of points)")
        points = []
        for i, raw in enumerate(data["points"]):
            try:
                points.append(Point.from_json({k: v for k, v in raw.items() if k != "writer"}))
            except (TypeError, ValueError, AttributeError, KeyError) as exc:
                raise InvalidPoints(f"{path}: point {i}: {exc}") from None
        seen: dict[tuple, int] = {}
        for i, p in enumerate(points):
            key = (p.model, p.kind, p.context, p.batch, p.backend, p.new_tokens)
            if key in seen:
                raise InvalidPoints(f"{path}: point {i} repeats point {seen[key]} ({p.model} {p.kind} @ {p.context} "
                                    f"batch {p.batch}, {p.backend})")
            seen[key] = i
        meta = data.get("meta", {})
        if not isinstance(meta, dict):
            raise InvalidPoints(f"{path}: meta is not an object")
        return cls(None, meta, points)

    def select(self, **match) -> list[Point]:
        """Points whose identity fields (model, kind, context, backend, status, ...) equal ``match``."""
        return [p for p in self.points if all(getattr(p, k) == v for k, v in match.items())]

    def models(self) -> list[str]:
        return list(dict.fromkeys(p.model for p in self.points))


class InvalidPoints(ValueError):
    pass


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock beside ``path`` (``.<name>.lock``, never opened through a link), held while the file is
    read, merged and replaced."""
    fd = open_lock(path.with_name(f".{path.name}.lock"))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def loglog_slope(xs: list[float], ys: list[float]) -> float | None:
    """Slope of log y against log x (1: linear, 0: flat); None with fewer than 3 usable points."""
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if x and y and x > 0 and y > 0]
    if len(pairs) < 3:
        return None
    x, y = np.log(np.array(pairs, dtype=float).T)
    return float(np.polyfit(x, y, 1)[0])


def series(store: ResultStore, model: str, kind: str, metric: str,
           backend: str = "eager") -> tuple[list[int], list[float]]:
    pts = sorted((p for p in store.select(model=model, kind=kind, status="ok", backend=backend)
                  if p.figure(metric) is not None), key=lambda p: p.context)
    return [p.context for p in pts], [p.figure(metric) for p in pts]


def crossover(ctx_a: list[int], a: list[float], ctx_b: list[int], b: list[float], axis: str = "context") -> str:
    """Where ``a`` (Mamba) becomes lower than ``b`` (the Transformer) and stays lower, over the contexts (or,
    ``axis="batch"``, batch sizes) both measured (one where either ran out of memory is not a comparison: the
    caller says so apart)."""
    values_b = dict(zip(ctx_b, b, strict=True))
    common = sorted(set(ctx_a) & set(values_b))
    if not common:
        return "not measured in this run" if not ctx_a or not values_b else f"no {axis} measured for both"
    wins = [a[ctx_a.index(c)] < values_b[c] for c in common]
    span = f"{common[0]}-{common[-1]}"
    last_a, last_b = a[ctx_a.index(common[-1])], values_b[common[-1]]
    # How many times better Mamba is at the largest point both ran (lower is better here: for throughput the
    # caller passes negated figures and states its own ratio).
    ratio = (f"; {last_b / last_a:.2f}x at {common[-1]}" if axis == "context" and last_a > 0 and last_b > 0
             else "")
    if len(common) == 1:
        return (f"{'yes' if wins[0] else 'no'} at {common[0]}, the only {axis} measured for both" + ratio)
    if all(wins):
        return f"everywhere in {span}" + ratio
    if not wins[-1]:
        longest = "at the longest context" if axis == "context" else "at the largest batch"
        return (f"nowhere in {span}" if not any(wins) else f"not {longest}, {common[-1]} (range {span})") + ratio
    first = max(i for i, w in enumerate(wins) if not w) + 1
    return (f"from {common[first]} tokens (range {span})" if axis == "context" else
            f"from batch {common[first]} (range {span})") + ratio


# The throughput figures a verdict is given for: end to end (prefill included, the paper's), and decode alone.
THROUGHPUT_FIGURES = {"end to end": "tokens_per_s", "decode only": "decode_tokens_per_s"}


def best_by_batch(store: ResultStore, model: str, prompt: int, backend: str | None,
                  figure: Callable[[Point], float | None], higher: bool,
                  pool: Callable[[Point], bool] | None = None) -> tuple[dict[int, tuple[float, str]], list[Point]]:
    """At one prompt length: batch -> (figure, backend) of one backend's points, or (``backend`` None) the best of
    the backends measured there (those ``pool`` keeps; the highest figure if ``higher``, else the lowest); and the
    points that ran, with the figure or without."""
    best: dict[int, tuple[float, str]] = {}
    ran = [p for p in store.select(model=model, kind="throughput", status="ok", context=prompt)
           if (p.backend == backend if backend else pool is None or pool(p))]
    for p in ran:
        value = figure(p)
        if value is not None and (p.batch not in best or (value > best[p.batch][0] if higher
                                                          else value < best[p.batch][0])):
            best[p.batch] = (value, p.backend)
    return best, ran


def throughput_by_batch(store: ResultStore, model: str, prompt: int, backend: str | None,
                        figure: str = "tokens_per_s", pool: Callable[[Point], bool] | None = None
                        ) -> dict[int, tuple]:
    """Batch -> (tokens/s, backend) at one prompt length: one backend's, or (None) the best of the backends
    measured there (those ``pool`` keeps). ``figure``: end to end (``tokens_per_s``) or ``decode_tokens_per_s``."""
    return best_by_batch(store, model, prompt, backend, lambda p: getattr(p.timing, figure), True, pool)[0]


class BatchFigure(NamedTuple):
    verb: str  # "Mamba ... than the Transformer"
    figure: Callable[[Point], float | None]
    why_none: Callable[[Point], str]  # why a point that ran has no figure, where it says
    timed: bool  # a time, whose rounds' spread can make a ratio near 1 no win


# The figures of a throughput point given a verdict by batch where lower is better. Time per output token needs no
# line of its own: at one batch it is batch / decode tokens per second, so its verdict is the decode-only
# throughput's.
BATCH_FIGURES: dict[str, BatchFigure] = {
    "time to first token": BatchFigure("faster", lambda p: p.timing.ttft_s, lambda p: "", True),
    "memory over the weights": BatchFigure("leaner", lambda p: p.memory.over_weights_bytes, lambda p: "", False),
    "energy per token, end to end": BatchFigure("leaner", lambda p: p.energy.joules_per_token,
                                                lambda p: p.energy.energy_note, False),
}


def _batch_oom_note(store: ResultStore, models: tuple[tuple[str, Any], ...], prompt: int, backend: str | None,
                    pool: Callable[[Point], bool] | None) -> str:
    """Where each model ran out of memory at this prompt (with several backends: only at a batch none of them
    ran); ``models``: (model, the batches it ran)."""
    text = ""
    for model, ran in models:
        oom = sorted(p.batch for p in store.select(model=model, kind="throughput", status="oom", context=prompt)
                     if (p.backend == backend if backend else (pool is None or pool(p)) and p.batch not in ran))
        if oom:
            text += f"; {model} out of memory from batch {oom[0]}"
    return text


def _spread_note(store: ResultStore, prompt: int, batch: int, ratio: float, *best: tuple[str, str]) -> str:
    """' (within the points' spread, N %)' where a ratio at ``batch`` is nearer 1 than the wider round-to-round
    spread of the two points it compares (``best``: (model, backend) of each): a 1.01x 'win' between points whose
    calls moved 3 % is no win."""
    spreads = [p.timing.rounds_spread for model, backend in best
               for p in store.select(model=model, kind="throughput", context=prompt, batch=batch, backend=backend)
               if p.timing.rounds_spread is not None]
    if spreads and abs(ratio - 1) <= max(spreads):
        return f" (within the points' spread, {max(spreads) * 100:.1f} %)"
    return ""


def batch_verdict(store: ResultStore, ssm: str, attn: str, prompt: int, backend: str | None, figure: BatchFigure,
                  pool: Callable[[Point], bool] | None = None) -> str | None:
    """From which batch ``ssm``'s figure (lower is better) is below ``attn``'s, how many times lower at the largest
    batch both ran, and where either ran out of memory; None where neither model has the figure at all."""
    (a, ran_a), (b, ran_b) = (best_by_batch(store, model, prompt, backend, figure.figure, False, pool)
                              for model in (ssm, attn))
    why_none = figure.why_none
    if not a and not b:
        return None
    if bool(a) != bool(b):
        only, other, ran = (ssm, attn, ran_b) if a else (attn, ssm, ran_a)
        why = next((why_none(p) for p in sorted(ran, key=lambda p: -p.batch) if why_none(p)), "")
        with_backend = f" with {backend}" if backend else ""
        text = (f"only {only} measured{with_backend}, not {other}" if not ran else
                f"no figure for {other}{with_backend} ({len(ran)} point{'s' if len(ran) > 1 else ''} ran; "
                f"{why or 'they give no reason'}), only for {only}")
    else:
        batches_a, batches_b = sorted(a), sorted(b)
        text = crossover(batches_a, [a[n][0] for n in batches_a], batches_b, [b[n][0] for n in batches_b], "batch")
        common = sorted(set(a) & set(b))
        if common and a[common[-1]][0] > 0:
            n = common[-1]
            text += f"; {b[n][0] / a[n][0]:.2f}x at batch {n}, the largest both ran"
            if figure.timed:
                text += _spread_note(store, prompt, n, b[n][0] / a[n][0], (ssm, a[n][1]), (attn, b[n][1]))
    # out of memory only where no point of the pool ran the batch (one that ran without this figure did run)
    text += _batch_oom_note(store, ((ssm, {p.batch for p in ran_a}), (attn, {p.batch for p in ran_b})), prompt,
                            backend, pool)
    if backend is None and a and b:
        text += (f" [best: {ssm} {'/'.join(sorted({v[1] for v in a.values()}))}, "
                 f"{attn} {'/'.join(sorted({v[1] for v in b.values()}))}]")
    return text


def throughput_verdict(store: ResultStore, ssm: str, attn: str, prompt: int, backend: str | None,
                       figure: str = "tokens_per_s", pool: Callable[[Point], bool] | None = None) -> str:
    """From which batch ``ssm`` generates more tokens per second than ``attn``, the ratio at the largest batch
    both ran, how far each ran and its most tokens per second (and their ratio), and where either ran out of
    memory (never read as the other winning)."""
    a = throughput_by_batch(store, ssm, prompt, backend, figure, pool)
    b = throughput_by_batch(store, attn, prompt, backend, figure, pool)
    batches_a, batches_b = sorted(a), sorted(b)
    if bool(a) != bool(b):
        only, other = (ssm, attn) if a else (attn, ssm)
        text = f"only {only} measured" + (f" with {backend}" if backend else "") + f", not {other}"
    else:
        text = crossover(batches_a, [-a[n][0] for n in batches_a], batches_b, [-b[n][0] for n in batches_b],
                         "batch")
    common = sorted(set(a) & set(b))
    if common:
        n = common[-1]
        text += f"; {a[n][0] / b[n][0]:.2f}x at batch {n}, the largest both ran"
        text += _spread_note(store, prompt, n, a[n][0] / b[n][0], (ssm, a[n][1]), (attn, b[n][1]))
    reach = []
    for model, ran in ((ssm, a), (attn, b)):
        if ran:
            most = max(ran, key=lambda n: ran[n][0])
            reach.append(f"{model} up to batch {max(ran)} (most {ran[most][0]:.0f} tokens/s, at {most})")
    if reach:
        text += "; " + ", ".join(reach)
    if a and b:
        text += f"; each at its most: {max(v[0] for v in a.values()) / max(v[0] for v in b.values()):.2f}x"
    # best of several backends: a batch is out of memory only where none of them ran it
    text += _batch_oom_note(store, ((ssm, a), (attn, b)), prompt, backend, pool)
    if backend is None and a and b:
        text += (f" [best: {ssm} {'/'.join(sorted({v[1] for v in a.values()}))}, "
                 f"{attn} {'/'.join(sorted({v[1] for v in b.values()}))}]")
    return text


# metric name -> (kind of point, field, verb for "Mamba is ... than the Transformer", per backend?)
PAIR_METRICS = {
    "prefill": ("prefill", "median_s", "faster", False),
    "decode": ("decode", "decode_s_per_token", "faster", True),
    "peak memory (prefill)": ("prefill", "extra_peak_bytes", "leaner", False),
    "cache": ("decode", "cache_bytes", "smaller", False),
    "energy per token (decode)": ("decode", "joules_per_token", "leaner", True),
}


def behind_generate(p: Point) -> bool:
    """Measured through transformers' own generate() (eager, or its compiled static cache): what a user of the
    generate() API gets, as against the suite's graph of the step or mamba-ssm's own model."""
    return p.decode_path in (TRANSFORMERS_EAGER, TRANSFORMERS_STATIC)


def best_series(store: ResultStore, model: str, kind: str, metric: str,
                pool: Callable[[Point], bool] | None = None) -> tuple[list[int], list[float], set[str]]:
    """Per context, the model's lowest figure over the backends measured there (those ``pool`` keeps), and which
    backends won."""
    best: dict[int, tuple[float, str]] = {}
    for p in store.select(model=model, kind=kind, status="ok"):
        if pool is not None and not pool(p):
            continue
        value = p.figure(metric)
        if value is not None and (p.context not in best or value < best[p.context][0]):
            best[p.context] = (value, p.backend)
    contexts = sorted(best)
    return contexts, [best[c][0] for c in contexts], {best[c][1] for c in contexts}


def _oom_note(store: ResultStore, models: list[str], kind: str, backend: str | None) -> str:
    notes = []
    for model in models:
        match = {"model": model, "kind": kind, "status": "oom"} | ({"backend": backend} if backend else {})
        ooms = sorted({p.context for p in store.select(**match)})
        if backend is None:  # best vs best: out of memory only where no backend ran
            ran = {p.context for p in store.select(model=model, kind=kind, status="ok")}
            ooms = [c for c in ooms if c not in ran]
        if ooms:
            notes.append(f"{model} out of memory at {', '.join(map(str, ooms))}")
    return f"; {'; '.join(notes)}" if notes else ""


# Why a point that ran has no figure for a metric, where the point says (the energy counter's window).
_FIGURE_NOTES = {"joules_per_token": "energy_note", "prefill_joules_per_prompt_token": "prefill_energy_note"}


def _no_figure_note(store: ResultStore, model: str, kind: str, metric: str, backend: str) -> str:
    """'' if ``model`` has no point of ``kind`` with ``backend`` that ran; else why those points have no
    ``metric`` figure (their notes, or that they do not say)."""
    ran = store.select(model=model, kind=kind, status="ok", backend=backend)
    if not ran:
        return ""
    field = _FIGURE_NOTES.get(metric)
    noted = [p for p in sorted(ran, key=lambda p: p.context) if field and getattr(p.energy, field)]
    return f"{len(ran)} point{'s' if len(ran) > 1 else ''} ran; " + (
        f"at {noted[-1].context}: {getattr(noted[-1].energy, field)}" if noted else "they give no reason")


def pairs(store: ResultStore) -> list[tuple[str, str]]:
    """(SSM or hybrid, attention model) of the same source, every such pair."""
    by_source: dict[str, dict[str, list[str]]] = {}
    for p in store.points:
        models = by_source.setdefault(p.source, {}).setdefault(p.family, [])
        if p.model not in models:
            models.append(p.model)
    return [(ssm, attn) for fams in by_source.values()
            for ssm in fams.get("ssm", []) + fams.get("hybrid", []) for attn in fams.get("attention", [])]


def _pools(points: list[Point]) -> list[tuple[str, Callable[[Point], bool] | None]]:
    """The best-of comparisons worth a line: best vs best always; best behind generate() where some backend
    measured is not behind it and some is."""
    pools: list[tuple[str, Callable[[Point], bool] | None]] = [("best vs best", None)]
    inside = {behind_generate(p) for p in points}
    if inside == {True, False}:
        pools.append(("best behind generate()", behind_generate))
    return pools


def crossovers(store: ResultStore) -> dict[str, dict[str, str]]:
    """Per pair: where Mamba starts to beat the Transformer, per metric and, for decode, per backend and best
    vs best (each model's fastest backend at each context). Out of memory is reported as such, never as the
    other model winning."""
    out: dict[str, dict[str, str]] = {}
    for ssm, attn in pairs(store):
        found = {}
        for name, (kind, metric, verb, per_backend) in PAIR_METRICS.items():
            backends = sorted({p.backend for p in store.select(kind=kind) if p.model in (ssm, attn)},
                              key=lambda b: (b != "eager", b)) if per_backend else ["eager"]
            for backend in backends:
                a, b = series(store, ssm, kind, metric, backend), series(store, attn, kind, metric, backend)
                if not a[0] and not b[0]:
                    continue
                label = f"{name}, {backend}" if per_backend else name
                if bool(a[0]) != bool(b[0]):  # e.g. the graphed backend, which only Mamba-1 has
                    only, other = (ssm, attn) if a[0] else (attn, ssm)
                    why = _no_figure_note(store, other, kind, metric, backend)
                    found[f"{verb} ({label})"] = (
                        (f"no {name} figure for {other} with {backend} ({why}), only for {only}" if why
                         else f"only {only} measured with {backend}, not {other}")
                        + _oom_note(store, [ssm, attn], kind, backend))
                    continue
                found[f"{verb} ({label})"] = crossover(*a, *b) + _oom_note(store, [ssm, attn], kind, backend)
            if per_backend and len(backends) > 1:
                for pool_name, pool in _pools([p for p in store.select(kind=kind) if p.model in (ssm, attn)]):
                    ca, va, wa = best_series(store, ssm, kind, metric, pool)
                    cb, vb, wb = best_series(store, attn, kind, metric, pool)
                    if not ca and not cb:
                        continue
                    text = (crossover(ca, va, cb, vb) + _oom_note(store, [ssm, attn], kind, None)
                            + f" [best: {ssm} {'/'.join(sorted(wa)) or '-'}, {attn} {'/'.join(sorted(wb)) or '-'}]")
                    if text != found.get(f"{verb} ({name}, best vs best)"):  # the same line twice says nothing
                        found[f"{verb} ({name}, {pool_name})"] = text
        throughput = [p for p in store.select(kind="throughput") if p.model in (ssm, attn)]
        for prompt in sorted({p.context for p in throughput}):
            at_prompt = [p for p in throughput if p.context == prompt]
            backends = sorted({p.backend for p in at_prompt}, key=lambda b: (b != "eager", b))
            lines = [(b, b, None) for b in backends]
            if len(backends) > 1:
                lines += [(None, pool_name, pool) for pool_name, pool in _pools(at_prompt)]
            for figure_name, figure in THROUGHPUT_FIGURES.items():
                for backend, label, pool in lines:
                    text = throughput_verdict(store, ssm, attn, prompt, backend, figure, pool)
                    best = f"higher throughput, {figure_name} (best vs best, prompt {prompt}, by batch)"
                    if pool is None or text != found.get(best):
                        found[f"higher throughput, {figure_name} ({label}, prompt {prompt}, by batch)"] = text
            for figure_name, figure in BATCH_FIGURES.items():
                for backend, label, pool in lines:
                    text = batch_verdict(store, ssm, attn, prompt, backend, figure, pool)
                    best = f"{figure.verb} ({figure_name}, best vs best, prompt {prompt}, by batch)"
                    if text is not None and (pool is None or text != found.get(best)):
                        found[f"{figure.verb} ({figure_name}, {label}, prompt {prompt}, by batch)"] = text
        out[f"{ssm} vs {attn}"] = found
    return out


def verdict_tables(store: ResultStore) -> list[str]:
    """Markdown: per pair and prompt length, the by-batch verdicts as one table -- a row per figure, a column per
    backend and best-of pool -- each cell where Mamba starts to win and the ratio at the largest batch both ran
    (the summary's verdicts, computed again and shortened; a best-of pool that gives best vs best's says so)."""
    md: list[str] = []
    ratio = re.compile(r"^\d+\.\d+x at batch \d+")
    # (row name, verdict of (ssm, attn, prompt, backend or None, pool) -> text or None)
    rows: list[tuple[str, Callable[..., str | None]]] = [
        (f"throughput, {name}", lambda s_, a_, c, b, pool, f=figure: throughput_verdict(store, s_, a_, c, b, f, pool))
        for name, figure in THROUGHPUT_FIGURES.items()]
    rows += [(name, lambda s_, a_, c, b, pool, f=figure: batch_verdict(store, s_, a_, c, b, f, pool))
             for name, figure in BATCH_FIGURES.items()]

    def shorten(text: str | None) -> str:
        if text is None:
            return "n/a"
        if text.startswith("no figure for "):  # its reason is the summary's line, below
            return f"no figure for {text.split()[3]} (the summary says why)"
        parts = text.split(" [best:")[0].split("; ")
        cell = parts[0] + (f", {parts[1].split(',')[0]}" if len(parts) > 1 and ratio.match(parts[1]) else "")
        if len(parts) > 1 and "(within the points' spread" in parts[1]:
            cell += " (within the points' spread)"
        cell = f"only {cell.split()[1]} ran it" if cell.startswith("only ") else cell  # "only m measured ..."
        # what the summary's line adds that changes the reading: each at its best, and where either ran out
        extra = [p for p in parts[1:] if p.startswith("each at its most") or " out of memory from batch " in p]
        return "; ".join([cell, *extra])

    for ssm, attn in pairs(store):
        throughput = [p for p in store.select(kind="throughput") if p.model in (ssm, attn)]
        for prompt in sorted({p.context for p in throughput}):
            at_prompt = [p for p in throughput if p.context == prompt]
            backends = sorted({p.backend for p in at_prompt}, key=lambda b: (b != "eager", b))
            columns: list[tuple[str, str | None, Callable[[Point], bool] | None]] = [(b, b, None) for b in backends]
            if len(backends) > 1:
                columns += [(name, None, pool) for name, pool in _pools(at_prompt)]
            table = []
            for name, verdict in rows:
                best = verdict(ssm, attn, prompt, None, None) if len(backends) > 1 else None
                cells = []
                for label, backend, pool in columns:
                    text = verdict(ssm, attn, prompt, backend, pool)
                    same = pool is not None and label != "best vs best" and text is not None and text == best
                    cells.append("as best vs best" if same else md_text(shorten(text)))
                if any(c != "n/a" for c in cells):
                    table.append(f"| {name} | " + " | ".join(cells) + " |")
            if table:
                md += [f"### {md_text(ssm)} vs {md_text(attn)}, prompt {prompt}: where Mamba wins, by batch", "",
                       "Each cell: from which batch Mamba's figure is better, and how many times better at the "
                       "largest batch both ran (over 1: Mamba better).", "",
                       "| figure | " + " | ".join(label for label, _, _ in columns) + " |",
                       "|" + " --- |" * (len(columns) + 1), *table, ""]
    return md


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if unit == "ms":
        return f"{value * 1e3:.1f}"
    if unit == "GB":
        return f"{value / 1e9:.2f}"
    if unit == "MB":
        return f"{value / 1e6:.1f}"
    if unit == "%":
        return f"{value * 100:.1f}"
    if unit == "mJ":
        return f"{value * 1e3:.3f}"
    if unit == "J":
        return f"{value:.3f}"
    return str(value)


SPREAD_FLAG = 0.05  # the summary flags points whose rounds or steps spread wider than this


def spread_of(point: Point) -> float | None:
    """The wider of the point's round-to-round and step-to-step spreads (None when neither was measured)."""
    values = [v for v in (point.timing.rounds_spread, point.timing.step_spread) if v is not None]
    return max(values) if values else None


def _one(store: ResultStore, **match) -> Point | None:
    return next(iter(store.select(**match)), None)


def _model_lines(store: ResultStore, model: str) -> list[str]:
    pts = store.select(model=model)
    first = pts[0]
    size = f"{first.params / 1e9:.3f} B" if first.params >= 1e8 else f"{first.params / 1e6:.2f} M"
    lines = [f"{model}  ({size} params, {first.dtype}, loaded in {first.load_s or 0:.2f} s, impl {first.impl})"]
    for q in store.select(model=model, kind="quickstart", status="ok"):
        lines.append(f"  quickstart ({q.backend}): {q.new_tokens} tokens in {q.timing.median_s:.3f} s "
                     f"({q.timing.tokens_per_s:.1f} tok/s), extra peak {_fmt(q.memory.extra_peak_bytes, 'GB')} GB"
                     + (f", first call {q.timing.first_call_s:.1f} s" if q.backend != "eager" else ""))
    contexts = sorted({p.context for p in pts if p.kind in ("prefill", "decode")})
    if contexts:
        lines.append("  context | prefill ms | +-% | MFU % | mJ/prompt tok | decode ms/tok | +-% | floor ms | MBU % | "
                     "extra peak GB | cache MB | J/tok")
    timing_only = False
    for c in contexts:
        pre = _one(store, model=model, kind="prefill", context=c, backend="eager")
        dec = _one(store, model=model, kind="decode", context=c, backend="eager")
        here = [p for p in (pre, dec) if p is not None]
        label = f"{c}{'*' if any(p.timing_only for p in here) else ''}"
        timing_only |= label.endswith("*")
        if any(not p.ok for p in here):
            where = " (prefill)" if pre is not None and not pre.ok else " (decode)"
            lines.append(f"  {label:>7} | out of memory{where}")
            continue
        pt, pm, pr, pe = (pre.timing, pre.memory, pre.roofline, pre.energy) if pre else (None,) * 4
        dt, dm, dr, de = (dec.timing, dec.memory, dec.roofline, dec.energy) if dec else (None,) * 4
        lines.append(
            f"  {label:>7} | {_fmt(pt and pt.median_s, 'ms'):>10} | {_fmt(pt and pt.rounds_spread, '%'):>3} | "
            f"{_fmt(pr and pr.mfu, '%'):>5} | {_fmt(pe and pe.prefill_joules_per_prompt_token, 'mJ'):>13} | "
            f"{_fmt(dt and dt.decode_s_per_token, 'ms'):>13} | {_fmt(dt and dt.step_spread, '%'):>3} | "
            f"{_fmt(dr and dr.floor_s, 'ms'):>8} | {_fmt(dr and dr.mbu, '%'):>5} | "
            f"{_fmt(pm and pm.extra_peak_bytes, 'GB'):>13} | {_fmt(dm and dm.cache_bytes, 'MB'):>8} | "
            f"{_fmt(de and de.joules_per_token, 'J'):>5}")
    if timing_only:
        lines.append(f"  * beyond the trained context ({first.trained_context} tokens): timing and memory "
                     "only, the outputs mean nothing")
    for d in sorted((p for p in store.select(model=model, kind="decode") if p.backend != "eager"),
                    key=lambda p: (p.backend, p.context)):
        if not d.ok:
            lines.append(f"  {d.backend} decode @ {d.context}: out of memory")
            continue
        t = d.timing
        lines.append(f"  {d.backend} decode @ {d.context}: {_fmt(t.decode_s_per_token, 'ms')} ms/token "
                     f"(+-{_fmt(t.step_spread, '%')} %), MBU {_fmt(d.roofline.mbu, '%')} %, extra peak "
                     f"{_fmt(d.memory.extra_peak_bytes, 'GB')} GB, first call "
                     f"{'n/a' if t.first_call_s is None else format(t.first_call_s, '.1f')} s (compilation "
                     f"~{'n/a' if t.compile_s is None else format(t.compile_s, '.1f')} s)" + _settled(t)
                     + (f" [{d.decode_path}]" if d.decode_path else ""))
    lines += throughput_lines(store, model)
    return lines


def throughput_lines(store: ResultStore, model: str) -> list[str]:
    """Per backend and prompt length: a row per batch size (tokens/s end to end and of the decode alone, the
    batch's time to first token, extra peak memory, the cache), and the largest batch that fit."""
    points = store.select(model=model, kind="throughput")
    lines = []
    for backend, prompt in sorted({(p.backend, p.context) for p in points}, key=lambda k: (k[1], k[0])):
        rows = sorted((p for p in points if p.backend == backend and p.context == prompt), key=lambda p: p.batch)
        new = rows[0].new_tokens
        ok = [p.batch for p in rows if p.ok]
        oom = [p.batch for p in rows if p.status == "oom"]
        fits = (f"largest batch that fits: {max(ok) if ok else 'none'}"
                + (f" (out of memory at {min(oom)})" if oom else f" (no out of memory up to {max(ok)})" if ok else ""))
        lines.append(f"  throughput, {backend}, prompt {prompt}, {new} new tokens: {fits}")
        # over weights: what the backend holds between calls (a graph's static state and cache) plus the call's
        # extra peak -- comparable across backends, where the extra peak alone leaves a graph's state out
        lines.append("    batch | tok/s | decode tok/s | TTFT ms | extra peak GB | over weights GB | cache MB | J/tok")
        for p in rows:
            if not p.ok:
                lines.append(f"    {p.batch:5d} | {p.status}")
                continue
            t, m = p.timing, p.memory
            decode = "n/a" if t.decode_tokens_per_s is None else f"{t.decode_tokens_per_s:.1f}"
            over = m.over_weights_bytes
            lines.append(f"    {p.batch:5d} | {t.tokens_per_s:.1f} | {decode} | {_fmt(t.ttft_s, 'ms')} | "
                         f"{_fmt(m.extra_peak_bytes, 'GB')} | {_fmt(over, 'GB')} | {_fmt(m.cache_bytes, 'MB')} | "
                         f"{_fmt(p.energy.joules_per_token, 'J')}")
    return lines


def _settled(t) -> str:
    """How many calls a compiled or graphed point warmed up with before its rounds (until a call recorded no
    new CUDA graph)."""
    if t.settle_calls is None:
        return ""
    if t.graphs_settled:
        return f", rounds after {t.settle_calls} warm-up call{'s' if t.settle_calls > 1 else ''}"
    return f", STILL RECORDING CUDA graphs after {t.settle_calls} warm-up calls (rounds may include recordings)"


def _name(p: Point) -> str:
    batch = f" batch {p.batch}" if p.batch != 1 else ""
    return f"{p.model} {p.kind} @ {p.context}{batch} ({p.backend})"


def spread_lines(store: ResultStore) -> list[str]:
    """Points whose rounds or steps spread wider than SPREAD_FLAG (or that missed an auto target), with
    their round counts."""
    ok = store.select(status="ok")
    wide = [p for p in ok if (spread_of(p) or 0) > SPREAD_FLAG or p.timing.target_met is False]
    unsettled = [p for p in ok if p.timing.graphs_settled is False or p.timing.graph_clears_in_rounds]
    lines = [f"{_name(p)}: CUDA graphs recorded again in its rounds ({p.timing.graph_clears_in_rounds} workspace "
             f"clears; {p.timing.settle_calls} warm-up calls, settled: {p.timing.graphs_settled}): its rounds "
             "include recordings and the cuBLAS workspaces re-allocated after them" for p in unsettled]
    if not wide:
        return lines
    lines += [f"spread over {SPREAD_FLAG * 100:g} % in {len(wide)} of {len(ok)} points "
              "(rounds: max-min over median; steps: interquartile range over median):"]
    for p in wide:
        t = p.timing
        lines.append(f"  {_name(p)}: rounds {_fmt(t.rounds_spread, '%')} %, steps {_fmt(t.step_spread, '%')} %, "
                     f"{t.rounds} rounds"
                     + (f" (auto, after {t.pilot_rounds} pilot rounds: 95 % interval +-{_fmt(t.ci95, '%')} %"
                        f"{'' if t.target_met else ', target ' + _fmt(t.target, '%') + ' % not met'})"
                        if t.pilot_rounds else "")
                     + (" (one unwarmed call: timing off)" if t.rounds == 1 else ""))
    return lines


def calibration_lines(store: ResultStore) -> list[str]:
    """The calibrated points: each figure as the suite measured it and as plain generate() did."""
    from .calibrate import NOISE_FACTOR

    asked = [p for p in store.points if p.calibration]
    calibrated = [p for p in asked if p.calibration.checks or p.calibration.failures or p.calibration.unresolved]
    if not asked:
        return []
    failed = sum(1 for p in calibrated if p.calibration.failures)
    unresolved = sum(1 for p in calibrated if p.calibration.unresolved and not p.calibration.failures)
    lines = [f"calibration: {len(calibrated)} points re-measured plainly, {failed} over tolerance"
             + (f", {unresolved} unresolved (over it within the host's noise, or out of memory: said below)"
                if unresolved else "")]
    if len(asked) > len(calibrated):
        lines.append(f"  {len(asked) - len(calibrated)} more selected with no figure to check (eager decode's time "
                     "per token is not calibrated, and a CPU has no peak memory to hold)")
    if not calibrated:
        return lines
    lines.append("  point | figure | suite (its call, alternating with plain; or the point's rounds) | plain | "
                 "suite/plain - 1, % (paired: 95 % interval of the median ratio; the point's rounds: the spread "
                 f"allowance, {NOISE_FACTOR:g}x the rounds' and plain calls' spread)")
    for p in calibrated:
        for c in p.calibration.checks:
            unit = "GB" if c["figure"].endswith("bytes") else "ms"
            fails = c.get("fails", c["diff"] > p.calibration.tolerance)  # schema-1 files have no "fails"
            ok = (f"  outside the {p.calibration.tolerance * 100:g} % band" if fails else
                  "  unresolved" if c.get("unresolved") else "")
            interval = (f" ({c['low'] * 100:+.1f} .. {c['high'] * 100:+.1f}, {c['pairs']} pairs)"
                        if c.get("low") is not None else
                        f" (allowance {NOISE_FACTOR * c['noise'] * 100:.0f} %)" if c.get("noise") else "")
            signed = (c["suite"] / c["plain"] - 1) * 100 if c["plain"] else float("inf")
            figure = c["figure"] + (" (point's rounds)" if c.get("of") == "point" else "")
            lines.append(f"  {_name(p)} | {figure} | {_fmt(c['suite'], unit)} {unit} | "
                         f"{_fmt(c['plain'], unit)} {unit} | {signed:+.1f}{interval}{ok}")
        lines += [f"  {_name(p)}: {note}" for note in p.calibration.unresolved if "out of memory" in note]
    return lines


def left_on_table_lines(store: ResultStore) -> list[str]:
    """Per model with native points: at each context, the native decode (the authors' own model and CUDA
    graph on the same weights) against transformers' best path -- by the path a point records, not its backend's
    name (Mamba's ``compiled`` on 4.x is the suite's graph) -- and the suite's graph: how much faster the same
    weights decode than transformers lets them."""

    lines: list[str] = []
    for model in store.models():
        decodes = [p for p in store.select(model=model, kind="decode", status="ok") if p.timing.decode_s_per_token]
        for context in sorted({p.context for p in decodes if p.decode_path == NATIVE}):
            at = [p for p in decodes if p.context == context]
            t = min(p.timing.decode_s_per_token for p in at if p.decode_path == NATIVE)
            theirs = [p for p in at if p.decode_path in (TRANSFORMERS_EAGER, TRANSFORMERS_STATIC)]
            graph = [p.timing.decode_s_per_token for p in at if p.decode_path == SUITE_GRAPH]
            if not lines:
                lines.append("what transformers leaves on the table (decode per token; native: the authors' own "
                             "model and CUDA graph on the same weights):")
            text = f"  {model} @ {context}: native {t * 1e3:.2f} ms"
            if theirs:
                best = min(theirs, key=lambda p: p.timing.decode_s_per_token)
                text += (f"; transformers' best {best.timing.decode_s_per_token * 1e3:.2f} ({best.backend}): "
                         f"{best.timing.decode_s_per_token / t:.2f}x")
            else:
                text += "; transformers not measured here"
            if graph:
                text += f"; suite graph {min(graph) * 1e3:.2f}: {min(graph) / t:.2f}x"
            lines.append(text)
    return lines


def summary_lines(store: ResultStore) -> list[str]:
    lines: list[str] = []
    for model in store.models():
        lines += _model_lines(store, model)
    unwarmed = [p for p in store.points if p.timing.unwarmed]
    if unwarmed:
        lines.append(f"{len(unwarmed)} of {len(store.points)} points are single unwarmed calls (timing off: "
                     "--benchmark-disable, or xdist): their times are no benchmark")
    lines += spread_lines(store)
    lines += calibration_lines(store)
    for pair, found in crossovers(store).items():
        lines.append(f"crossovers, {pair} (Nx: how many times better the SSM's figure is at the largest context "
                     "or batch both ran -- over 1, the SSM better):")
        ssm = pair.split(" vs ")[0]
        arch = next((p.arch for p in store.points if p.model == ssm), "mamba")
        label = "Mamba" if arch == "mamba" else arch  # "mamba2 faster (prefill)": which SSM, not always Mamba
        lines += [f"  {label} {k}: {v}" for k, v in found.items()]
    lines += left_on_table_lines(store)
    return lines


# The report's plots against context: (point kind, figure, axis label, file); throughput-<prompt>.png besides.
CONTEXT_PLOTS = (
    ("prefill", "median_s", "prefill time (s)", "prefill.png"),
    ("decode", "decode_s_per_token", "decode time per token (s)", "decode.png"),
    ("prefill", "extra_peak_bytes", "extra peak memory in prefill (bytes)", "memory.png"),
    ("decode", "cache_bytes", "cache / state (bytes)", "cache.png"),
)


def write_report(store: ResultStore, folder: Path) -> list[Path]:
    """Markdown summary and log-log PNG plots (latency and memory against context, every model, the
    device's roofline floor where known)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    claim_report_folder(folder, "scaling report")  # empty, or made by a report: nothing of a user's is replaced
    written: list[Path] = []

    def save(fig, path: Path) -> None:  # through a temporary file: a link planted at the name is replaced
        buffer = io.BytesIO()
        fig.savefig(buffer, dpi=110, format="png")
        plt.close(fig)
        atomic_write_bytes(path, buffer.getvalue())
    # Only the plots something was measured for (a throughput-only run has no context plots, nor slopes).
    plots = [plot for plot in CONTEXT_PLOTS if any(series(store, m, plot[0], plot[1])[0] for m in store.models())]
    for kind, metric, label, name in plots:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for model in store.models():
            xs, ys = series(store, model, kind, metric)
            if xs:
                ax.loglog(xs, ys, marker="o", label=model)
            fx, fy = series(store, model, "decode", "floor_s") if metric == "decode_s_per_token" else ([], [])
            if fx:
                ax.loglog(fx, fy, linestyle="--", label=f"{model}: roofline floor ({store.meta.get('device', '')})")
        ax.set_xlabel("context (tokens)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = folder / name
        save(fig, path)
        written.append(path)
    images = [name for *_, name in plots]
    throughput = store.select(kind="throughput", status="ok")
    for prompt in sorted({p.context for p in throughput}):
        # Tokens per second against batch, a line per model and backend (the Mamba paper's Figure 8): end to end
        # and decode alone side by side; an x where a line ran out of memory (at its last tokens/s).
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
        for ax, (figure_name, figure) in zip(axes, THROUGHPUT_FIGURES.items(), strict=True):
            for model in store.models():
                for backend in sorted({p.backend for p in throughput if p.model == model and p.context == prompt}):
                    pts = sorted((p for p in throughput if p.model == model and p.context == prompt
                                  and p.backend == backend and getattr(p.timing, figure) is not None),
                                 key=lambda p: p.batch)
                    if not pts:
                        continue
                    (line,) = ax.loglog([p.batch for p in pts], [getattr(p.timing, figure) for p in pts],
                                        marker="o", label=f"{model}, {backend}", base=2)
                    oom = sorted(p.batch for p in store.select(model=model, kind="throughput", status="oom",
                                                               context=prompt, backend=backend))
                    if oom:
                        ax.plot([oom[0]], [getattr(pts[-1].timing, figure)], marker="x", markersize=10,
                                color=line.get_color(), linestyle="none")
            ax.set_xlabel("batch size (x: out of memory)")
            ax.set_ylabel(f"tokens/s, {figure_name}")
            ax.set_title(f"prompt {prompt}, {throughput[0].new_tokens} new tokens", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            if ax.get_legend_handles_labels()[0]:  # a figure no point has (decode alone of a one-token run)
                ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"throughput-{prompt}.png"
        save(fig, folder / name)
        written.append(folder / name)
        images.append(name)
    md = ["# Scaling report", "", *verdict_tables(store), "```", *map(in_code_block, summary_lines(store)), "```", ""]
    if plots:
        md += ["| model | metric | log-log slope |", "| --- | --- | --- |"]
    for model in store.models():
        for kind, metric, label, _ in plots:
            slope = loglog_slope(*series(store, model, kind, metric))
            md.append(f"| {md_text(model)} | {label} | {'n/a' if slope is None else f'{slope:.2f}'} |")
    md += ["", *[f"![{name}]({name})" for name in images], ""]
    meta = dict(store.meta)
    if meta.get("dtype") == "auto":  # the option; each model resolves it (bfloat16 full-size on a GPU, ...)
        dtypes = sorted({f"{p.model} {p.dtype}" for p in store.points if p.dtype})
        meta["dtype"] = "auto: " + ", ".join(dtypes) if dtypes else "auto"
    if meta:
        md += ["## Run", "", *[f"- {md_text(k)}: {md_text(v)}" for k, v in meta.items()], ""]
    path = folder / "README.md"
    atomic_write_text(path, "\n".join(md))
    written.append(path)
    # A plot an earlier report left in the folder that this one does not draw (a prompt or figure this run did not
    # measure) would be read as this run's: removed. Only names a report writes; nothing else in the folder.
    ours = {name for *_, name in CONTEXT_PLOTS}
    for old in folder.glob("*.png"):
        if old not in written and (old.name in ours or re.fullmatch(r"throughput-\d+\.png", old.name)):
            old.unlink()
    return written
