"""Latency and memory of generate() for every model in the set: the quickstart scenario, prefill and decode
over the context sweep, throughput over batch sizes. Each benchmark asserts on what it measured: exactly the
tokens asked for, and no time below the device's roofline floor (that would mean a broken measurement)."""

from __future__ import annotations

import pytest

from pytest_ssmbench.sweep import measure_point, skip_past_out_of_memory
from ssmbench.bench import prompt_ids
from ssmbench.inputs import QUICKSTART_PROMPT
from ssmbench.point import Point

pytestmark = pytest.mark.benchmark

QUICKSTART_NEW_TOKENS = 50


def check(point: Point, new_tokens: int) -> None:
    assert point.timing.new_tokens_seen == [new_tokens], (
        f"{point.model}: asked for exactly {new_tokens} new tokens, got {point.timing.new_tokens_seen}"
    )
    per_token, floor = point.timing.decode_s_per_token, point.roofline.floor_s
    if per_token is not None and floor is not None:
        assert per_token >= floor, (
            f"{point.model}: {per_token * 1e3:.3f} ms/token at context {point.context} is below the "
            f"roofline floor {floor * 1e3:.3f} ms: the measurement is wrong (a missing synchronize?)"
        )
    assert not point.calibration_failures, "calibration: " + "; ".join(point.calibration_failures)
    # torch.compile's CUDA-graph pools may grow between calls (its business); the suite's own paths may not.
    drift = point.memory.round_drift_bytes if point.backend != "compiled" else None
    assert not drift or abs(drift) < 1 << 20, (
        f"{point.model}: {drift / 1e6:.1f} MB more allocated at the last round's start than at the first: "
        "something a round allocated outlives it, and every later round's memory counts it"
    )
    mfu = point.roofline.mfu
    if mfu is not None:
        assert mfu <= 1.0, f"{point.model}: prefill MFU {mfu:.2f} > 1: measurement is wrong"


def test_latency_quickstart(lm, benchmark, bench, backend):
    """The DGX Spark quickstart: its prompt, 50 new greedy tokens."""
    ids = lm.encode(QUICKSTART_PROMPT)["input_ids"]
    point = measure_point(benchmark, bench, lm, "quickstart", ids, QUICKSTART_NEW_TOKENS, backend)
    check(point, QUICKSTART_NEW_TOKENS)


def test_latency_prefill(lm, benchmark, bench, context):
    """Time to first token: generate(max_new_tokens=1) on a prompt of ``context`` tokens."""
    point = measure_point(benchmark, bench, lm, "prefill", prompt_ids(lm, context), 1)
    check(point, 1)


def test_latency_decode(lm, benchmark, bench, context, backend):
    """Time per output token after a prompt of ``context`` tokens (median of per-step intervals); with the
    compiled backend the first call's compilation is reported apart (compile_s)."""
    point = measure_point(benchmark, bench, lm, "decode", prompt_ids(lm, context), bench.decode_tokens, backend)
    check(point, bench.decode_tokens)


def test_throughput(lm, benchmark, bench, prompt, batch, backend):
    """Generation throughput, the Mamba paper's experiment (its Figure 8: prompt 2048, 128 new tokens, batch
    1 ... 128): ``batch`` prompts of ``prompt`` tokens, greedy, through each backend -- tokens per second end to
    end and of the decode alone, the batch's time to first token, extra peak memory, the cache's bytes. Batch
    sizes go up until the first out of memory (recorded); larger ones skip, and the sweep goes on."""
    skip_past_out_of_memory(bench, lm.name, backend, prompt, batch)
    new = bench.throughput_new_tokens
    point = measure_point(benchmark, bench, lm, "throughput", prompt_ids(lm, prompt, batch), new, backend)
    check(point, new)
    t, floor = point.timing, point.roofline.floor_s
    assert t.decode_tokens_per_s and t.tokens_per_s, f"{lm.name}: no throughput figure"
    if floor is not None:  # a decode step of the batch reads every weight and the batch's cache at least once
        assert batch / t.decode_tokens_per_s >= floor, (
            f"{lm.name}: {t.decode_tokens_per_s:.0f} decode tokens/s at batch {batch} implies "
            f"{batch / t.decode_tokens_per_s * 1e3:.3f} ms a step, under the roofline floor {floor * 1e3:.3f} ms")
