"""pytest-benchmark's private surfaces the suite relies on (pytest_ssmbench/benchmark_adapter.py) still
exist in the installed release: a release that renames one fails here, by name, instead of silently in a
sweep (a memory gate that compares nothing, a baseline written in place)."""

import inspect

import pytest

from pytest_ssmbench import benchmark_adapter

pytestmark = [pytest.mark.quick, pytest.mark.selftest]


def test_file_storage_has_what_the_adapter_replaces_and_reads(tmp_path):
    from pytest_benchmark.storage.file import FileStorage

    # pytest-benchmark's own attributes (the suite has replaced them by now), not the replacements
    assert benchmark_adapter.original("save") is not benchmark_adapter._atomic_save
    assert isinstance(benchmark_adapter.original("location"), property), "FileStorage.location"
    assert list(inspect.signature(benchmark_adapter.original("save")).parameters) == ["self", "output_json", "save"], \
        "FileStorage.save(output_json, save)"
    assert FileStorage.save is benchmark_adapter._atomic_save, "the suite's atomic save is in place"
    storage = benchmark_adapter.file_storage(f"file://{tmp_path}")
    assert callable(storage.get) and isinstance(storage._next_num, str) and hasattr(storage, "logger"), \
        "FileStorage.get, ._next_num, .logger"
    assert storage.query("[0-9][0-9][0-9][0-9]_") == [], "FileStorage.query"


def test_benchmark_session_has_what_the_adapter_reads(pytestconfig):
    bs = benchmark_adapter.session(pytestconfig)
    assert bs is not None, "config._benchmarksession"
    for name in ("disabled", "benchmarks", "compared_mapping", "compare_fail", "storage", "logger"):
        assert hasattr(bs, name), f"BenchmarkSession.{name}"
    assert benchmark_adapter.timing_disabled(pytestconfig) == bool(bs.disabled)
    current, compared = benchmark_adapter.current_and_compared(pytestconfig)
    assert isinstance(current, list) and isinstance(compared, dict)


def test_benchmark_session_display_raises_what_the_adapter_catches():
    """BenchmarkSession.display and PerformanceRegression (the adapter catches the one the other raises)."""
    from pytest_benchmark.session import BenchmarkSession, PerformanceRegression

    display = benchmark_adapter._ORIGINALS.get("display", BenchmarkSession.display)
    assert list(inspect.signature(display).parameters) == ["self", "tr"], "BenchmarkSession.display(tr)"
    assert issubclass(PerformanceRegression, Exception)
    assert "check_regressions" in inspect.getsource(display), "display() no longer checks the regressions"
