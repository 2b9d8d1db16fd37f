"""A point's memory does not depend on what ran before it: the same prefill point measured before and after a
point of another backend (compiled for attention models, the suite's CUDA graph for Mamba) starts from the
same resident memory and peaks at the same extra memory. GPU only: the allocator's figures are CUDA's."""

from __future__ import annotations

import dataclasses

import pytest

from pytest_ssmbench.sweep import measure_point
from ssmbench import results
from ssmbench.bench import prompt_ids
from tests.fakes import FakeBenchmark as Rounds

pytestmark = pytest.mark.benchmark


def test_point_memory_does_not_depend_on_earlier_backends(lm, bench):
    if lm.device.type != "cuda":
        pytest.skip(f"{lm.name}: needs a GPU (the allocator's peak, and the compiled and graphed backends, are CUDA's)")
    b = dataclasses.replace(bench, store=results.ResultStore(), calibrate_contexts=())
    other = "graphed" if lm.spec.arch.suite_graph else "compiled"
    context = 2048 if lm.spec.large else 64
    ids = prompt_ids(lm, context)
    before = measure_point(Rounds(), b, lm, "prefill", ids, 1)
    between = measure_point(Rounds(), b, lm, "decode", ids, 8, other)
    after = measure_point(Rounds(), b, lm, "prefill", ids, 1)
    for point in (before, after) + ((between,) if other != "compiled" else ()):
        drift = point.memory.round_drift_bytes
        assert abs(drift) < 1 << 20, (
            f"{lm.name}: {point.kind} ({point.backend}) rounds started {drift / 1e6:.1f} MB apart: something a "
            "round allocated outlived it")
    for key in ("resident_allocated_bytes", "extra_peak_bytes"):
        was, now = getattr(before.memory, key), getattr(after.memory, key)
        assert abs(now - was) <= max(1 << 20, 0.01 * was), (
            f"{lm.name}: prefill @ {context} {key} {was / 1e6:.1f} MB before a {other} point, "
            f"{now / 1e6:.1f} MB after it: something of that point stayed allocated")
