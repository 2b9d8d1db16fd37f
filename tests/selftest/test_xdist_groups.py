"""End to end under pytest-xdist (two CPU workers): every test carries its model's xdist group tag and every
model's tests run on one worker, whatever the pytest version (pytest >= 9.2 drops xdist's own group tags,
pytest-dev/pytest-xdist#1386; the suite puts them back)."""

import re
from collections import defaultdict

import pytest

from ssmbench.registry import ARCHS
from tests.selftest.child import run_pytest

pytestmark = pytest.mark.selftest


def test_each_model_stays_on_one_worker(pytestconfig):
    if not hasattr(pytestconfig.option, "dist"):
        pytest.skip("pytest-xdist is not active in this run (-p no:xdist or not installed)")
    run = run_pytest("-n", "2", "-v", "-m", "quick", "--device", "cpu", "--models", "tiny",
                     "tests/conformance/test_models.py", "tests/conformance/test_cache_size.py")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    workers = defaultdict(set)
    lines = re.findall(r"^\[(gw\d+)\] .*?(tests/\S+)", run.stdout, re.M)
    assert lines, run.stdout[-3000:]
    tiny = {f"tiny-{key}" for key in ARCHS}
    pattern = re.compile(r"\[(" + "|".join(sorted(map(re.escape, tiny), key=len, reverse=True)) + r")[\]-]")
    for worker, nodeid in lines:
        model = pattern.search(nodeid).group(1)
        assert nodeid.endswith(f"@{model}"), f"{nodeid}: no xdist group tag '@{model}', so xdist cannot group it"
        workers[model].add(worker)
    assert set(workers) == tiny, run.stdout[-3000:]
    assert all(len(w) == 1 for w in workers.values()), f"a model's tests ran on several workers: {dict(workers)}"


def test_workers_points_all_reach_the_results_file(pytestconfig, tmp_path):
    if not hasattr(pytestconfig.option, "dist"):
        pytest.skip("pytest-xdist is not active in this run (-p no:xdist or not installed)")
    from ssmbench.results import ResultStore

    points = tmp_path / "points.json"
    run = run_pytest("-n", "2", "-m", "benchmark", "--ssm-device", "cpu", "--ssm-models", "tiny", "-k",
                     "test_latency_prefill or test_latency_decode", f"--ssm-results-file={points}")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    measured = int(re.search(r"(\d+) passed", run.stdout).group(1))
    saved = ResultStore.read(points).points
    per_model = 6  # 3 CPU contexts x (prefill, decode)
    assert len(saved) == measured == per_model * len(ARCHS), f"{measured} measured, {len(saved)} in the results file"
    assert {(p.timing.rounds, p.timing.unwarmed) for p in saved} == {(1, True)}, \
        "under xdist each point is one unwarmed call, and says so"
