"""The regression machinery against stored JSON: refusing baselines from another GPU or model set, and the
memory gate pytest-benchmark lacks. Unit tests use the committed H200 baseline; the end-to-end tests run the
suite itself in a subprocess on the tiny models (about 25 s, so selftest tier only, not quick)."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest

from pytest_ssmbench import baselines
from ssmbench.registry import ARCHS
from tests.selftest.child import ROOT, run_pytest

H200 = ROOT / "baselines" / "h200" / "Linux-CPython-3.12-64bit" / "0001_synthetic-bf16.json"


def _session(warnings: list[str]):
    return SimpleNamespace(storage="baselines/h200",
                           logger=SimpleNamespace(warning=warnings.append))


def _config():
    config = SimpleNamespace(stash=pytest.Stash())
    config.stash[baselines.refusals_key] = []
    config.stash[baselines.refused_baselines_key] = []
    return config


@pytest.mark.quick
@pytest.mark.selftest
def test_compare_refuses_other_gpu_and_model_set():
    saved = json.loads(H200.read_text())
    mine = dict(saved["machine_info"], gpu_name="NVIDIA GB10", model_set="tiny")
    config = _config()
    baselines.compare_machine_info(config, _session([]), mine, saved)
    (text,) = config.stash[baselines.refusals_key]
    assert config.stash[baselines.refused_baselines_key] == [saved]
    assert "gpu_name: baseline 'NVIDIA H200', this run 'NVIDIA GB10'" in text
    assert "model_set: baseline 'synthetic', this run 'tiny'" in text and "baselines/h200" in text


@pytest.mark.quick
@pytest.mark.selftest
def test_a_run_on_other_architectures_compares_what_both_measured():
    """Adding an architecture (or running fewer) never invalidates a baseline: the benchmarks both hold are
    compared by name, the others are listed as not compared, and only a run sharing none is refused."""
    saved = json.loads(H200.read_text())
    config = _config()
    mine = dict(saved["machine_info"], models="synthetic-mamba,synthetic-mamba2,synthetic-phi")
    baselines.compare_machine_info(config, _session([]), mine, saved)
    assert config.stash[baselines.refusals_key] == []
    mapping = {str(H200): {b["fullname"]: b for b in saved["benchmarks"]}}
    old = SimpleNamespace(fullname=saved["benchmarks"][0]["fullname"])
    new = SimpleNamespace(fullname=old.fullname.replace("synthetic-mamba", "synthetic-mamba2"))
    assert baselines.not_in_baselines([old, new], mapping) == [new.fullname]
    assert baselines.not_in_baselines([old], mapping) == []


@pytest.mark.quick
@pytest.mark.selftest
def test_compare_accepts_same_machine_and_warns_on_library_change():
    saved = json.loads(H200.read_text())
    warnings: list[str] = []
    mine = dict(saved["machine_info"], transformers="9.9.9")
    config = _config()
    baselines.compare_machine_info(config, _session(warnings), mine, saved)
    assert config.stash[baselines.refusals_key] == []
    assert len(warnings) == 1 and "transformers" in warnings[0]


@pytest.mark.quick
@pytest.mark.selftest
def test_memory_gate_flags_growth_past_threshold():
    saved = json.loads(H200.read_text())
    mapping = {str(H200): {b["fullname"]: b for b in saved["benchmarks"]}}
    current = [SimpleNamespace(fullname=b["fullname"], extra_info=copy.deepcopy(b["extra_info"]))
               for b in saved["benchmarks"]]
    assert baselines.memory_regressions(current, mapping, 10.0) == []
    grown = next(c for c in current if "prefill[ctx32768-synthetic-phi]" in c.fullname)
    grown.extra_info["extra_peak_bytes"] = int(grown.extra_info["extra_peak_bytes"] * 1.25)
    found = baselines.memory_regressions(current, mapping, 10.0)
    assert len(found) == 1 and "ctx32768-synthetic-phi" in found[0] and "+25.0 %" in found[0]
    assert baselines.memory_regressions(current, mapping, 30.0) == []


@pytest.mark.quick
@pytest.mark.selftest
def test_decode_gate_flags_a_slower_step_the_whole_call_hides():
    """Mamba's compiled decode at 131072 in the stored H200 baseline: a 3.6 s call, 0.15 s of it decode. A step
    three times as slow moves pytest-benchmark's whole-call median by under 15 %; the decode gate sees +200 %.
    Off unless asked for; a throughput point's step is not its business (its figure is the whole call)."""
    saved = json.loads(H200.read_text())
    mapping = {str(H200): {b["fullname"]: b for b in saved["benchmarks"]}}
    current = [SimpleNamespace(fullname=b["fullname"], extra_info=copy.deepcopy(b["extra_info"]))
               for b in saved["benchmarks"]]
    slow = next(c for c in current if "decode[ctx131072-compiled-synthetic-mamba]" in c.fullname)
    info = slow.extra_info
    decode_s = info["decode_s_per_token"] * (info["new_tokens"] - 1)
    assert (info["median_s"] + 2 * decode_s) / info["median_s"] < 1.15  # what the whole call's gate would see
    info["decode_s_per_token"] *= 3
    assert baselines.decode_regressions(current, mapping, None) == []
    found = baselines.decode_regressions(current, mapping, 15.0)
    assert len(found) == 1 and "ctx131072-compiled-synthetic-mamba" in found[0] and "+200.0 %" in found[0], found
    batch = next(c for c in current if c.extra_info.get("kind") == "throughput")
    batch.extra_info["decode_s_per_token"] *= 3
    assert len(baselines.decode_regressions(current, mapping, 15.0)) == 1


@pytest.fixture(scope="module")
def saved_baseline(tmp_path_factory):
    storage = tmp_path_factory.mktemp("storage")
    # --device cpu: the foreign-baseline check below expects this run's gpu_name to be 'none', on any machine
    run = run_pytest("-m", "benchmark", "--models", "tiny", "--device", "cpu", "-k", "quickstart",
                  f"--benchmark-storage=file://{storage}",
                  "--benchmark-save=base", f"--results-file={storage / 'points.json'}")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (saved,) = storage.glob("*/0001_base.json")
    return storage, saved


@pytest.mark.selftest
def test_end_to_end_compare_then_refuse_foreign_and_corrupt_baselines(saved_baseline, tmp_path):
    storage, saved = saved_baseline
    points = tmp_path / "points.json"
    args = ("-m", "benchmark", "--models", "tiny", "--device", "cpu", "-k", "quickstart",
            f"--benchmark-storage=file://{storage}", "--benchmark-compare=0001", f"--results-file={points}")
    same = run_pytest(*args, "--benchmark-compare-fail=median:1000%")
    assert same.returncode == 0, same.stdout[-3000:] + same.stderr[-3000:]
    assert "Comparing against benchmarks from" in same.stdout + same.stderr

    original = saved.read_text()
    data = json.loads(original)
    data["machine_info"]["gpu_name"] = "NVIDIA H200"
    saved.write_text(json.dumps(data))
    points.unlink()
    foreign = run_pytest(*args, "--benchmark-compare-fail=median:5%")
    out = foreign.stdout + foreign.stderr
    assert foreign.returncode == 4, out[-3000:]
    assert "refusing to compare" in out and "gpu_name: baseline 'NVIDIA H200', this run 'none'" in out, out[-2000:]
    assert f"{len(ARCHS)} passed" in out, "the run itself must still happen"
    assert len(json.loads(points.read_text())["points"]) == len(ARCHS), "the run's own results must still be saved"

    # Fewer architectures than the baseline: compared, exit 0. Only points the baseline lacks: refused, exit 4.
    saved.write_text(original)
    points.unlink()
    fewer = run_pytest(*args, "--ssm-archs", "mamba")
    assert fewer.returncode == 0 and "Comparing against" in fewer.stdout + fewer.stderr, fewer.stdout[-3000:]
    other = run_pytest(*[a if a != "quickstart" else "prefill and ctx32" for a in args])
    out = other.stdout + other.stderr
    assert other.returncode == 4 and f"none of this run's {len(ARCHS)} benchmarks is in the baseline" in out, \
        out[-3000:]

    saved.write_text(original[: len(original) // 2])  # a truncated baseline
    points.unlink()
    corrupt = run_pytest(*args)
    out = corrupt.stdout + corrupt.stderr
    assert corrupt.returncode == 4, out[-3000:]
    assert f"baseline file {saved} is unreadable: JSONDecodeError" in out, out[-2000:]
    assert len(json.loads(points.read_text())["points"]) == len(ARCHS)
    saved.write_text(original)


@pytest.mark.selftest
@pytest.mark.parametrize("option, value, valid", [
    ("--models", "tinyy", "auto, tiny, synthetic, pretrained"),
    ("--dtype", "fp8", "auto, float32, bfloat16, float16"),
    ("--device", "tpu", "auto, cpu, cuda"),
    ("--contexts", "512,abc", "comma-separated positive integers"),
    ("--batch-sizes", "0", "comma-separated positive integers"),
    ("--model-path", "mambo=/x", "mamba phi"),
    ("--backends", "eager,jit", "eager compiled graphed"),
    ("--archs", "mamba,nope", "nope mamba phi"),
])
def test_unknown_option_value_is_a_usage_error_naming_valid_values(option, value, valid):
    run = run_pytest(option, value, "--collect-only", "-q")
    assert run.returncode == 4, run.stdout[-2000:] + run.stderr[-2000:]
    out = run.stdout + run.stderr
    for word in valid.replace(",", "").split():
        assert word in out, f"{option} {value}: the message does not name {word!r}:\n{out[-1500:]}"


def test_a_baseline_whose_machine_info_is_not_a_mapping_is_refused(tmp_path):
    """It crashed pytest-benchmark (INTERNALERROR, nothing ran); now it is refused like any foreign file."""
    folder = tmp_path / "Linux-CPython-3.12-64bit"
    folder.mkdir()
    (folder / "0001_bad.json").write_text('{"machine_info": "h200", "benchmarks": []}')
    run = run_pytest("-m", "benchmark", "--ssm-models", "tiny", "-k", "prefill and ctx32 and tiny-phi",
                     f"--benchmark-storage=file://{tmp_path}", "--benchmark-compare=*/0001")
    assert run.returncode == 4, run.stdout[-2000:] + run.stderr[-2000:]
    assert "'machine_info' is not a mapping" in run.stdout and "1 passed" in run.stdout


def _merge_script():
    from ssmbench.commands import merge

    return merge


@pytest.mark.selftest
def test_a_sweep_split_over_sessions_compares_as_one_merged_baseline(saved_baseline, tmp_path, capsys):
    """ssmbench merge: a baseline saved in two sessions (Mamba's benchmarks in one, the rest in the
    other) merged back into one file holding every benchmark, which a run compares against as a whole; a
    benchmark in both files, another GPU, or an existing output is refused."""
    merge = _merge_script()
    storage, saved = saved_baseline
    data = json.loads(saved.read_text())
    halves = [copy.deepcopy(data), copy.deepcopy(data)]
    halves[0]["benchmarks"] = [b for b in data["benchmarks"] if b["fullname"].endswith("-mamba]")]
    halves[1]["benchmarks"] = [b for b in data["benchmarks"] if not b["fullname"].endswith("-mamba]")]
    assert halves[0]["benchmarks"] and halves[1]["benchmarks"]
    split = tmp_path / "split"
    paths = [split / "a.json", split / "b.json"]
    split.mkdir()
    for path, half in zip(paths, halves, strict=True):
        path.write_text(json.dumps(half))
    folder = tmp_path / "merged" / saved.parent.name
    out = folder / "0001_merged.json"
    assert merge.main([str(out), *map(str, paths)]) == 0
    merged = json.loads(out.read_text())
    assert sorted(b["fullname"] for b in merged["benchmarks"]) == sorted(b["fullname"] for b in data["benchmarks"])
    assert [m["file"] for m in merged["commit_info"]["merged_from"]] == list(map(str, paths))
    run = run_pytest("-m", "benchmark", "--models", "tiny", "--device", "cpu", "-k", "quickstart",
                     f"--benchmark-storage=file://{tmp_path / 'merged'}", "--benchmark-compare=0001",
                     "--benchmark-compare-fail=median:1000%", f"--results-file={tmp_path / 'points.json'}")
    assert run.returncode == 0 and "Comparing against" in run.stdout + run.stderr, run.stdout[-3000:]
    assert "none of this run" not in run.stdout + run.stderr
    capsys.readouterr()
    foreign = copy.deepcopy(halves[1])
    foreign["machine_info"]["gpu_name"] = "NVIDIA H200"
    (split / "c.json").write_text(json.dumps(foreign))
    for files, says in (([paths[0], paths[0]], "is in both"), ([paths[0], split / "c.json"], "gpu_name"),
                        ([paths[0]], "exists"), ([paths[0]], "already holds 0001_merged.json")):
        target = (out if says == "exists" else folder / "0001_again.json" if says.startswith("already")
                  else tmp_path / f"{says.replace(' ', '-')}.json")
        with pytest.raises(SystemExit) as exit_:
            merge.main([str(target), *map(str, files)])
        assert exit_.value.code == 2 and says in capsys.readouterr().err


@pytest.mark.selftest
def test_a_compare_with_no_baseline_file_is_refused_not_passed(tmp_path):
    """pytest-benchmark only warns when --benchmark-compare matches no file: a CI gate with the suite's memory gate
    alone then passed with nothing compared (QA pass). It is refused (exit 4), naming the files that are there; the
    run itself still happens."""
    folder = tmp_path / "Linux-CPython-3.12-64bit"
    folder.mkdir()
    (folder / "0001_other.json").write_text('{"machine_info": {}, "benchmarks": []}')
    run = run_pytest("-m", "benchmark", "--ssm-models", "tiny", "-k", "prefill and ctx32 and tiny-phi",
                     f"--benchmark-storage=file://{tmp_path}", "--benchmark-compare=*/0002", "--memory-compare-fail=10")
    out = run.stdout + run.stderr
    assert run.returncode == 4, out[-2000:]
    assert "--benchmark-compare=*/0002: no baseline file in" in out
    assert "Linux-CPython-3.12-64bit/0001_other.json" in out
    assert "1 passed" in run.stdout
    # said in the header too, before the first test runs (a long sweep can be stopped)
    said = run.stdout.find("ssmbench: comparison refused before the run")
    assert -1 < said < run.stdout.find("tests/"), run.stdout[:3000]


@pytest.mark.selftest
def test_a_timing_regression_fails_the_run_without_losing_the_summary(tmp_path):
    """pytest-benchmark's --benchmark-compare-fail raised out of its terminal summary: a traceback, and neither the
    suite's summary nor pytest's result line was written (QA pass). Now its regression lines, the summary, the
    result line, and exit status 1."""
    args = ("-m", "benchmark", "--ssm-models", "tiny", "-k", "quickstart and tiny-phi",
            f"--benchmark-storage=file://{tmp_path}", f"--results-file={tmp_path / 'points.json'}")
    saved = run_pytest(*args, "--benchmark-save=base")
    assert saved.returncode == 0, saved.stdout[-2000:]
    (path,) = tmp_path.glob("*/0001_base.json")
    data = json.loads(path.read_text())
    for bench in data["benchmarks"]:  # a baseline a thousand times faster than any run
        for field in ("min", "max", "mean", "median"):
            bench["stats"][field] /= 1000
    path.write_text(json.dumps(data))
    run = run_pytest(*args, "--benchmark-compare=0001", "--benchmark-compare-fail=min:10%")
    out = run.stdout + run.stderr
    assert run.returncode == 1, out[-3000:]
    assert "Performance has regressed" in out and "Traceback" not in out, out[-3000:]
    assert "ssmbench: Mamba vs Transformer" in run.stdout and "1 passed" in run.stdout, run.stdout[-2000:]
    assert "performance has regressed past --benchmark-compare-fail" in run.stdout
