"""Result store, fits and crossovers: the figures the summary and report print."""

import json
import os

import pytest

from ssmbench import results

pytestmark = [pytest.mark.quick, pytest.mark.selftest]


def test_loglog_slope_recovers_exponents():
    xs = [512, 1024, 2048, 4096]
    assert results.loglog_slope(xs, [3 * x for x in xs]) == pytest.approx(1.0)
    assert results.loglog_slope(xs, [7.0] * 4) == pytest.approx(0.0, abs=1e-9)
    assert results.loglog_slope(xs, [x * x for x in xs]) == pytest.approx(2.0)
    assert results.loglog_slope(xs[:2], [1, 2]) is None  # too few points to call a shape


@pytest.mark.parametrize("a, b, oom, expected", [
    ([1, 1, 1], [2, 2, 2], [], "everywhere in 1-4"),
    ([3, 3, 3], [1, 1, 1], [], "nowhere in 1-4"),
    ([3, 1, 1], [2, 2, 2], [], "from 2 tokens (range 1-4)"),
    ([1, 3, 1], [2, 2, 2], [], "from 4 tokens (range 1-4)"),
    ([1, 1, 3], [2, 2, 2], [], "not at the longest context, 4 (range 1-4)"),
])
def test_crossover(a, b, oom, expected):
    assert results.crossover([1, 2, 4], a, [1, 2, 4], b, oom) == expected


def test_out_of_memory_counts_as_a_win_for_the_other_model():
    assert results.crossover([1, 2, 4], [3, 3, 3], [1, 2], [1, 1], oom_b=[4]) == "from 4 tokens (range 1-4)"


def test_store_rewrites_file_after_every_point(tmp_path):
    store = results.ResultStore(tmp_path / "points.json", {"device": "x"})
    store.add({"model": "m", "kind": "prefill", "context": 1})
    store.add({"model": "m", "kind": "prefill", "context": 2})
    saved = json.loads((tmp_path / "points.json").read_text())
    assert [p["context"] for p in saved["points"]] == [1, 2] and saved["meta"] == {"device": "x"}


def test_atomic_write_keeps_old_file_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "baseline.json"
    target.write_text("old")

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        results.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target], "temporary file left behind"
