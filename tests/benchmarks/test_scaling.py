"""Scaling shapes over the context sweep this run measured: log-log slopes checked against what each
architecture implies. Runs after the sweep (marker after_sweep) and skips, saying why, without enough points."""

from __future__ import annotations

import pytest

from pytest_ssmbench import benchmark_adapter
from ssmbench.results import loglog_slope, series

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
    """Mamba's state is the same at any context (slope 0); a KV cache grows linearly (slope 1)."""
    contexts, ys = _series(bench, spec, "decode", "cache_bytes")
    xs = [c + bench.decode_tokens - 1 for c in contexts]  # positions the returned cache holds
    slope = loglog_slope(xs, ys)
    expected = 0.0 if spec.family == "ssm" else 1.0
    assert abs(slope - expected) <= SLOPE_TOLERANCE, (
        f"{spec.name}: cache bytes grow with context at log-log slope {slope:.3f}; a {spec.family} model "
        f"should give {expected:g} +- {SLOPE_TOLERANCE} (points {dict(zip(xs, ys, strict=True))})"
    )


@pytest.mark.family("ssm")
def test_mamba_decode_time_flat_in_context(spec, bench, request):
    if benchmark_adapter.timing_disabled(request.config):
        pytest.skip("timing is off (--benchmark-disable or xdist): single unwarmed calls say nothing about a slope")
    xs, ys = _series(bench, spec, "decode", "decode_s_per_token")
    slope = loglog_slope(xs, ys)
    assert abs(slope) <= FLAT_DECODE, (
        f"{spec.name}: decode time per token grows with context at slope {slope:.3f} (> {FLAT_DECODE}); "
        f"a recurrent decode does the same work at any context. Points (s/token): {dict(zip(xs, ys, strict=True))}"
    )
