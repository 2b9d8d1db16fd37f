"""A demanding (or hostile) user: output paths that are not regular files, links planted in shared folders,
files that are not what they are given for, an unrelated project in the same environment, and the scripts' bad
input. Each case is refused with one clear line, nothing is written through a link, and nothing of the user's
is lost. Runs pytest and the scripts in child processes, as a user would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.selftest.child import ROOT, clean_env, run_pytest

pytestmark = pytest.mark.selftest

TEST = "tests/conformance/test_models.py::test_parameters_in_requested_dtype"
H200 = ROOT / "baselines" / "h200"


def _refused(run, message: str) -> None:
    out = run.stdout + run.stderr
    assert run.returncode == 4 and message in out, out[-2500:]
    assert "Traceback (most recent call last)" not in out, out[-2500:]


@pytest.mark.parametrize("make, message", [
    (lambda p: os.mkfifo(p), "is a FIFO, not a regular file"),
    (lambda p: p.symlink_to("/proc/self/fd/1"), "is a symbolic link"),
    (lambda p: p.symlink_to(p.parent / "elsewhere.json"), "is a symbolic link"),  # a dangling one
    (lambda p: p.write_text('{"points": [1, 2'), "is not a points file"),  # a truncated results file
    (lambda p: p.write_text('{"machine_info": {}, "benchmarks": []}'), "is not a points file"),
    (lambda p: p.write_text("meeting notes\n"), "is not a points file"),
])
def test_a_results_file_that_is_not_a_regular_points_file_is_refused_at_configure(tmp_path, make, message):
    path = tmp_path / "points.json"
    make(path)
    before = path.read_text() if path.is_file() and not path.is_symlink() else None
    _refused(run_pytest("--collect-only", "-q", f"--ssm-results-file={path}", TEST, timeout=120), message)
    if before is not None:
        assert path.read_text() == before


def test_a_device_node_is_refused_never_replaced(tmp_path):
    node = tmp_path / "null"
    try:
        os.mknod(node, 0o666 | 0o020000, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod needs root here (CAP_MKNOD): the FIFO and link cases cover the check")
    _refused(run_pytest("--collect-only", "-q", f"--ssm-results-file={node}", TEST, timeout=120),
             "is a character device, not a regular file")
    assert node.is_char_device()


def test_an_empty_path_is_refused_and_a_tilde_is_expanded_where_it_is_written(tmp_path):
    _refused(run_pytest("--collect-only", "-q", "--ssm-results-file=", TEST, timeout=120), "an empty path")
    home = tmp_path / "home"
    home.mkdir()
    run = run_pytest("-q", "-p", "no:randomly", "--ssm-models=tiny", "--ssm-archs=phi", "--benchmark-disable",
                     "--ssm-results-file=~/pts.json", "tests/benchmarks/test_latency.py", "-k", "prefill",
                     "--ssm-contexts=8", env_extra={"HOME": str(home)}, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert (home / "pts.json").is_file() and not (ROOT / "~").exists()


def test_a_scaling_report_folder_of_the_users_is_refused_at_configure(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "README.md").write_text("my notes")
    _refused(run_pytest("--collect-only", "-q", f"--scaling-report={folder}", TEST, timeout=120),
             "holds no .ssmbench-report")
    assert (folder / "README.md").read_text() == "my notes"


def test_scaling_report_without_matplotlib_is_refused_at_configure(tmp_path):
    (tmp_path / "matplotlib.py").write_text("raise ImportError('no matplotlib here')\n")
    _refused(run_pytest("--collect-only", "-q", f"--scaling-report={tmp_path / 'r'}", TEST,
                        env_extra={"PYTHONPATH": str(tmp_path)}, timeout=120), "--scaling-report needs matplotlib")


def test_a_baseline_with_a_nan_or_a_string_statistic_is_refused(tmp_path):
    storage = tmp_path / "b"
    run = run_pytest("-q", "-m", "benchmark", "--ssm-models=tiny", "--ssm-archs=phi", "--ssm-contexts=8",
                     "-k", "prefill", f"--benchmark-storage={storage}", "--benchmark-save=base",
                     "tests/benchmarks/test_latency.py", timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    (saved,) = storage.glob("*/0001_base.json")
    for field, value in (("median", float("nan")), ("median", "fast")):
        data = json.loads(saved.read_text())
        data["benchmarks"][0]["stats"][field] = value
        saved.write_text(json.dumps(data))
        compare = run_pytest("-q", "-m", "benchmark", "--ssm-models=tiny", "--ssm-archs=phi", "--ssm-contexts=8",
                             "-k", "prefill", f"--benchmark-storage={storage}", "--benchmark-compare=0001",
                             "--benchmark-compare-fail=median:5%", "tests/benchmarks/test_latency.py", timeout=300)
        out = compare.stdout + compare.stderr
        assert compare.returncode == 4 and f"stats.{field} is" in out and "0001_base.json" in out, out[-2500:]
        assert "Traceback (most recent call last)" not in out


UNRELATED_TEST = '''
import pytest, torch

@pytest.fixture
def spec():
    return "mine"

@pytest.fixture
def context():
    return 1

def test_own_fixtures(spec, context):
    assert (spec, context) == ("mine", 1)

@pytest.mark.benchmark(group="g")
def test_benchmark_marker(benchmark):
    benchmark(lambda: None)

def test_numerics_untouched():
    import os
    assert torch.backends.cudnn.allow_tf32 is True and "TRITON_F32_DEFAULT" not in os.environ
'''


def test_an_unrelated_project_in_the_same_environment_is_untouched(tmp_path):
    """The installed plugin does nothing in another project's run: its fixtures named spec and context are its
    own (not parametrised), pytest-benchmark's marker works, no header, TF32 and Triton's float32 untouched."""
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --strict-config --strict-markers\n")
    (tmp_path / "test_other.py").write_text(UNRELATED_TEST)
    env = clean_env(("TRITON_F32_DEFAULT",))
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300, check=False)
    out = run.stdout + run.stderr
    assert run.returncode == 0 and "3 passed" in out, out[-2500:]
    assert "ssmbench" not in out and "[tiny-" not in out, out[-2500:]


def test_plugin_switches(tmp_path):
    """-p no:benchmark: one usage error; -p pytest_ssmbench.plugin beside the installed entry point: runs once;
    --ssm-archs mamba,mamba: each test once."""
    _refused(run_pytest("--collect-only", "-q", "-p", "no:benchmark", TEST, timeout=120),
             "measures through pytest-benchmark, which is not active")
    run = run_pytest("--collect-only", "-q", "-p", "pytest_ssmbench.plugin", "--ssm-models=tiny",
                     "--ssm-archs=mamba,mamba", TEST, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert run.stdout.count("[tiny-mamba]") == 1, run.stdout[-2000:]


COMMAND = {"fleet.py": "fleet", "summarize.py": "summarize", "merge_benchmarks.py": "merge",
           "project_device.py": "project", "version_sweep.py": "version-sweep"}


def _script(name: str, *args: str, cwd=ROOT, env=None) -> subprocess.CompletedProcess:
    """``ssmbench COMMAND``, as a user runs it (named here by the script it was)."""
    return subprocess.run([sys.executable, "-m", "ssmbench", COMMAND[name], *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False, env=env)


def _usage_error(run, message: str) -> None:
    out = run.stdout + run.stderr
    assert run.returncode == 2 and message in out, out[-2500:]
    assert "Traceback (most recent call last)" not in out, out[-2500:]


def test_fleet_refuses_bad_output_and_bad_numbers(tmp_path):
    points = tmp_path / "points-a.json"
    shutil.copy(H200 / "points-synthetic-bf16.json", points)
    _usage_error(_script("fleet.py", str(tmp_path), "-o", str(points)), "one of the points files")
    assert json.loads(points.read_text())["points"]
    folder = tmp_path / "out"
    folder.mkdir()
    _usage_error(_script("fleet.py", str(tmp_path), "-o", str(folder)), "is a folder")
    assert not list(tmp_path.glob("*.tmp")) and not list(folder.iterdir())
    for value in ("nan", "inf", "-5"):
        _usage_error(_script("fleet.py", str(tmp_path), "--disagree", value, "-o", str(tmp_path / "x.html")),
                     "expected a finite percentage")
    data = json.loads(points.read_text())
    data["points"][0]["context"] = "<script>alert(1)</script>"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "points-x.json").write_text(json.dumps(data))
    _usage_error(_script("fleet.py", str(bad), "-o", str(tmp_path / "y.html")), "context")
    assert not (tmp_path / "y.html").exists()


def test_fleet_writes_no_page_through_a_planted_link_and_lives_with_a_c_locale(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("root's file")
    page = tmp_path / "fleet.html"
    page.symlink_to(victim)
    data = json.loads((H200 / "points-synthetic-bf16.json").read_text())
    data["meta"]["device"] = "NVIDIA H200 — Ünïcode"
    for p in data["points"]:
        p["device"] = data["meta"]["device"]
    source = tmp_path / "src"
    source.mkdir()
    (source / "points-a.json").write_text(json.dumps(data))
    run = _script("fleet.py", str(source), "-o", str(page), env=clean_env() | {"LC_ALL": "C", "LANG": "C"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert victim.read_text() == "root's file" and page.is_file() and not page.is_symlink()
    assert not list(tmp_path.glob("*.tmp"))


def test_summarize_refuses_nan_negative_and_duplicate_points_and_writes_through_no_link(tmp_path):
    data = json.loads((H200 / "points-synthetic-bf16.json").read_text())
    for field, value, message in (("median_s", float("nan"), "finite"), ("median_s", -1.0, "negative")):
        bad = json.loads(json.dumps(data))
        bad["points"][0]["timing"][field] = value
        path = tmp_path / f"bad-{field}.json"
        path.write_text(json.dumps(bad))
        _usage_error(_script("summarize.py", str(path)), message)
    twice = json.loads(json.dumps(data))
    twice["points"].append(twice["points"][0])
    (tmp_path / "twice.json").write_text(json.dumps(twice))
    _usage_error(_script("summarize.py", str(tmp_path / "twice.json")), "repeats point 0")
    victim = tmp_path / "victim"
    link = tmp_path / "merged.json"
    link.symlink_to(victim)  # dangling: writing through it would create the victim
    _usage_error(_script("summarize.py", str(H200 / "points-synthetic-bf16.json"), "--write", str(link)), "exists")
    assert not victim.exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("mine")
    _usage_error(_script("summarize.py", str(H200 / "points-synthetic-bf16.json"), "--report", str(mine)),
                 "holds no .ssmbench-report")
    assert (mine / "README.md").read_text() == "mine"


def test_merge_benchmarks_bad_input_is_one_line(tmp_path):
    base = json.loads((H200 / "Linux-CPython-3.12-64bit" / "0001_synthetic-bf16.json").read_text())
    base.pop("commit_info", None)
    first = tmp_path / "a.json"
    first.write_text(json.dumps(base))
    run = _script("merge_benchmarks.py", str(tmp_path / "0009_m.json"), str(first))
    assert run.returncode == 0, run.stdout + run.stderr  # no commit_info: merged all the same
    victim = tmp_path / "victim"
    link = tmp_path / "0010_m.json"
    link.symlink_to(victim)
    _usage_error(_script("merge_benchmarks.py", str(link), str(first)), "exists")
    assert not victim.exists()
    base["benchmarks"][0]["stats"]["median"] = float("nan")
    first.write_text(json.dumps(base))
    _usage_error(_script("merge_benchmarks.py", str(tmp_path / "0011_m.json"), str(first)), "stats.median")


def test_other_scripts_bad_input_is_one_line(tmp_path):
    data = json.loads((H200 / "points-synthetic-bf16.json").read_text())
    for p in data["points"]:
        p["arch"] = "nosuch"
    (tmp_path / "p.json").write_text(json.dumps(data))
    _usage_error(_script("project_device.py", "dgx-spark", str(tmp_path / "p.json")), "'nosuch' unknown")
    _usage_error(_script("version_sweep.py", "../../x"), "Invalid version")


def test_a_non_editable_install_ships_every_subpackage(tmp_path):
    """pip install . (not editable): the wheel must hold ssmbench.archs, or every pytest of that environment dies
    at plugin import."""
    out, source = tmp_path / "wheel", tmp_path / "source"  # built from a copy: no build/ left in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "ssmbench", "pytest_ssmbench"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, source / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(out), str(source)], capture_output=True, text=True, timeout=600, check=False)
    if build.returncode and "No module named" in build.stderr:
        pytest.skip(f"cannot build a wheel here without network: {build.stderr.strip()[-300:]}")
    assert build.returncode == 0, build.stderr[-2000:]
    import zipfile

    (wheel,) = out.glob("ssmbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("ssmbench/archs/__init__.py", "ssmbench/archs/mamba.py", "pytest_ssmbench/entry.py",
                   "pytest_ssmbench/plugin.py", "ssmbench/safeio.py"):
        assert module in names, sorted(n for n in names if n.endswith(".py"))
    (entry,) = [n for n in names if n.endswith("entry_points.txt")]
    assert "ssmbench = pytest_ssmbench.entry" in zipfile.ZipFile(wheel).read(entry).decode()


@pytest.mark.parametrize("args, says", [
    (["baselines/h200/points-throughput-bf16.json"], "holds no decode points that ran"),
    (["baselines/h200/points-synthetic-bf16.json", "--throughput",
      "baselines/h200/Linux-CPython-3.12-64bit/0001_synthetic-bf16.json"], "is not a results file"),
    (["baselines/h200/points-synthetic-bf16.json", "--throughput", "missing.json"], "no results file at missing.json"),
])
def test_project_device_refuses_a_file_without_the_points_it_projects(args, says):
    """It printed headers over empty tables and exited 0 for a points file without decode (or throughput) points,
    and a KeyError for a pytest-benchmark file (QA pass)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]  # the test tree's baselines
    run = subprocess.run([sys.executable, "-m", "ssmbench", "project", "dgx-spark", *args], cwd=root,
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 2 and says in run.stderr, run.stderr[-1500:]
