"""Verdicts by batch at one prompt length (the Mamba paper's throughput experiment): from which batch the SSM's
throughput, time to first token, memory over the weights or energy per token is better, and by how much at the
largest batch both ran -- one backend's, or the best of several."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from .point import Point
from .store import ResultStore


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
