"""Scaling shapes over the context sweep this run measured: log-log slopes checked against what each
architecture implies. Runs after the sweep (marker after_sweep) and skips, saying why, without enough points."""

from __future__ import annotations

import math

import pytest

from pytest_ssmbench import benchmark_adapter
from ssmbench import backends
from ssmbench.bench import prompt_ids
from ssmbench.results import loglog_slope, series
from ssmbench.runs import Runs

pytestmark = [pytest.mark.benchmark, pytest.mark.after_sweep]

SLOPE_TOLERANCE = 0.05
FLAT_DECODE = 0.15  # |slope| of Mamba's decode time per token: constant work per token, any context


def _series(bench, spec, kind, metric):
    xs, ys = series(bench.store, spec.name, kind, metric)
    if len(xs) < 3:
        pytest.skip(f"{spec.name}: {len(xs)} {kind} points measured in this run; a slope needs 3 "
                    "(run with the latency benchmarks, e.g. pytest -m benchmark)")
    return xs, ys


def test_cache_scaling_shape(spec, bench):
    """Mamba's state is the same at any context (slope 0); a KV cache grows linearly (slope 1); a hybrid's is
    a fixed state plus its attention layers' K and V: affine, the same bytes per added token everywhere."""
    contexts, ys = _series(bench, spec, "decode", "cache_bytes")
    xs = [c + bench.decode_tokens - 1 for c in contexts]  # positions the returned cache holds
    if spec.family == "hybrid":
        per_token = [(y1 - y0) / (x1 - x0) for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:], strict=False)]
        state = ys[0] - per_token[0] * xs[0]
        assert min(per_token) > 0 and state > 0 and max(per_token) - min(per_token) <= 0.01 * min(per_token), (
            f"{spec.name}: a hybrid's cache should be a fixed state plus K and V per token; bytes per token "
            f"between the sweep's points {per_token}, state {state:.0f} (points {dict(zip(xs, ys, strict=True))})")
        return
    slope = loglog_slope(xs, ys)
    expected = 0.0 if spec.family == "ssm" else 1.0
    assert abs(slope - expected) <= SLOPE_TOLERANCE, (
        f"{spec.name}: cache bytes grow with context at log-log slope {slope:.3f}; a {spec.family} model "
        f"should give {expected:g} +- {SLOPE_TOLERANCE} (points {dict(zip(xs, ys, strict=True))})"
    )


INTERLEAVED_ROUNDS = 7


def interleaved_slope(lm, contexts: tuple[int, int], new_tokens: int) -> tuple[float, dict[int, float]]:
    """Decode time per token at the shortest and the longest context, measured alternately (short, long,
    short, ...) so that a host whose speed drifts between seconds moves both alike: the log-log slope of the
    two medians, and the medians."""
    runs = {c: Runs() for c in contexts}
    calls = {c: backends.get("eager").call(lm, prompt_ids(lm, c), new_tokens, runs[c]) for c in contexts}
    for c in contexts:  # warm-up
        runs[c].setup(lm.device)()
        calls[c]()
    for _ in range(INTERLEAVED_ROUNDS):
        for c in contexts:
            runs[c].setup(lm.device)()
            calls[c]()
    medians = {c: runs[c].measured(INTERLEAVED_ROUNDS).per_token_s for c in contexts}
    (lo, hi) = contexts
    return math.log(medians[hi] / medians[lo]) / math.log(hi / lo), medians


@pytest.mark.family("ssm")
def test_mamba_decode_time_flat_in_context(spec, bench, request):
    """Over the sweep's points; where those say the time grows (or shrinks), the shortest and longest contexts
    are measured again, alternately, and that decides: a point of the sweep is measured within seconds, and on
    a shared host a whole point can run 1.5x slower than the next (seen on the 2-core CPU), which no real
    dependence on the context does, and an alternating measurement cancels."""
    if benchmark_adapter.timing_disabled(request.config):
        pytest.skip("timing is off (--benchmark-disable or xdist): single unwarmed calls say nothing about a slope")
    xs, ys = _series(bench, spec, "decode", "decode_s_per_token")
    slope = loglog_slope(xs, ys)
    if abs(slope) <= FLAT_DECODE:
        return
    again, medians = interleaved_slope(request.getfixturevalue("lm"), (xs[0], xs[-1]), bench.decode_tokens)
    assert abs(again) <= FLAT_DECODE, (
        f"{spec.name}: decode time per token grows with context at slope {slope:.3f} over the sweep "
        f"({dict(zip(xs, ys, strict=True))} s/token) and {again:.3f} measured alternately ({medians}); a recurrent "
        f"decode does the same work at any context (|slope| <= {FLAT_DECODE})"
    )
