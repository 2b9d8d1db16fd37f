"""Every use of pytest-benchmark's private surfaces, in one place. The suite otherwise uses its public hooks
(``pytest_benchmark_update_machine_info``, ``pytest_benchmark_compare_machine_info``) and the ``benchmark``
fixture's ``pedantic``. ``tests/selftest/test_benchmark_adapter.py`` checks each surface below exists in
the installed pytest-benchmark, so a release that changes one fails loudly there, not silently in a sweep.

Private surfaces used, and why:
- ``FileStorage.location`` (property): it is ``path.relative_to(cwd)`` and raises for a storage outside the
  working directory, crashing pytest-benchmark's own warning; replaced by ``os.path.relpath``.
- ``FileStorage.save`` (with ``get``, ``_next_num``, ``logger``): writes a baseline in place, so a crash midway
  leaves a truncated file the next compare trips on; replaced by an atomic write (same name and numbering).
- ``config._benchmarksession`` (``disabled``, ``benchmarks``, ``compared_mapping``, ``compare_fail``): whether
  timing is on; the benchmarks of this run and the baselines compared against, for the memory gate; dropping a
  refused baseline from the comparison.
- ``BenchmarkSession.display`` (with ``pytest_benchmark.session.PerformanceRegression``): with
  --benchmark-compare-fail a regression raises out of pytest-benchmark's terminal summary, which ends pytest in a
  traceback before the suite's summary and pytest's own result line are written (exit status 1 from the
  traceback); the regression is caught after pytest-benchmark has printed its lines, said, and made exit status 1
  there (``TerminalReporter._session``; without it, re-raised).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from ssmbench import results


def _atomic_save(self, output_json, save):
    from pytest_benchmark.utils import safe_dumps

    output_file = self.get(f"{self._next_num}_{save}.json")
    if output_file.exists():
        raise FileExistsError(f"refusing to overwrite the baseline {output_file}")
    try:
        results.atomic_write_text(output_file, safe_dumps(output_json, ensure_ascii=True, indent=4))
    except KeyboardInterrupt:  # Ctrl-C while saving: pytest's own exit code for an interrupt, no traceback
        pytest.exit(f"interrupted while saving the baseline {output_file}: not written (nothing half-written "
                    "either); every point measured is in the results file", returncode=pytest.ExitCode.INTERRUPTED)
    self.logger.info(f"Saved benchmark data in: {output_file}")


_ORIGINALS: dict[str, Any] = {}  # pytest-benchmark's own FileStorage attributes, before patching


def patch_file_storage() -> None:
    import inspect

    from pytest_benchmark.storage.file import FileStorage

    for name in ("location", "save"):
        _ORIGINALS.setdefault(name, inspect.getattr_static(FileStorage, name))
    FileStorage.location = property(lambda self: os.path.relpath(self.path))
    FileStorage.save = _atomic_save


regressed_key = pytest.StashKey[bool]()  # pytest-benchmark's --benchmark-compare-fail found a regression


REGRESSED = "pytest-benchmark: performance has regressed past --benchmark-compare-fail (its lines above)"


def patch_display() -> None:
    """BenchmarkSession.display without the PerformanceRegression it raises after printing its regression lines:
    said, recorded in the config's stash (``regressed``) and made the session's exit status 1 right there --
    whichever of the two plugins' terminal summaries pytest calls first (their order follows the entry points'
    load order, which differs between environments)."""
    from pytest_benchmark.session import BenchmarkSession, PerformanceRegression

    display = _ORIGINALS.setdefault("display", BenchmarkSession.display)

    def _display(self, tr):
        try:
            return display(self, tr)
        except PerformanceRegression:
            tr.config.stash[regressed_key] = True
            tr.write_line(REGRESSED, red=True, bold=True)
            session = getattr(tr, "_session", None)
            if session is None:  # cannot set the exit status: fail as pytest-benchmark itself would
                raise
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

    BenchmarkSession.display = _display


def regressed(config: pytest.Config) -> bool:
    return config.stash.get(regressed_key, False)


def original(name: str) -> Any:
    """pytest-benchmark's own FileStorage attribute ``name``, whether or not the suite has patched it."""
    import inspect

    from pytest_benchmark.storage.file import FileStorage

    return _ORIGINALS.get(name, inspect.getattr_static(FileStorage, name))


def file_storage(url: str):
    """pytest-benchmark's file storage at ``url`` (a path or file://path), as --benchmark-compare reads it."""
    from pytest_benchmark.storage.file import FileStorage
    from pytest_benchmark.utils import get_machine_id

    return FileStorage(url.removeprefix("file://"), logger=None, default_machine_id=get_machine_id())


def session(config: pytest.Config) -> Any:
    return getattr(config, "_benchmarksession", None)


def timing_disabled(config: pytest.Config) -> bool:
    """--benchmark-disable, or xdist (pytest-benchmark disables itself there)."""
    bs = session(config)
    return bs is None or bool(bs.disabled)


def current_and_compared(config: pytest.Config) -> tuple[list, dict]:
    """This run's benchmarks and the baselines compared against ({path: {fullname: saved benchmark}})."""
    bs = session(config)
    if bs is None:
        return [], {}
    return list(bs.benchmarks), dict(bs.compared_mapping or {})


def drop_compared(config: pytest.Config, refused: list[dict]) -> None:
    """Compare against none of the ``refused`` baselines; with none left, switch the time gate off too (else
    pytest-benchmark raises at its summary, before the suite says why)."""
    bs = session(config)
    if bs is None or not refused:
        return
    refused_ids = {id(b) for r in refused for b in r["benchmarks"]}
    bs.compared_mapping = {path: mapping for path, mapping in bs.compared_mapping.items()
                           if not any(id(b) in refused_ids for b in mapping.values())}
    if not bs.compared_mapping:
        bs.compare_fail = None
