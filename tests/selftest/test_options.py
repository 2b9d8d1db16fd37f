"""Options: the prefixed names, the old names as aliases, ini equivalents, and bad values as usage errors
naming the valid ones -- from the command line and from the ini file alike."""

import re

import pytest

from ssmbench.registry import ARCHS
from tests.selftest.child import run_pytest

pytestmark = pytest.mark.selftest

TEST = "tests/conformance/test_models.py::test_parameters_in_requested_dtype"


def _models(run) -> set[str]:
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return set(re.findall(r"\[([a-z]+-[a-z0-9_]+)\]", run.stdout))


def test_prefixed_name_old_alias_and_ini_select_the_same_models():
    prefixed = _models(run_pytest("--collect-only", "-q", "--ssm-models", "tiny", TEST))
    assert prefixed == {f"tiny-{key}" for key in ARCHS}
    assert _models(run_pytest("--collect-only", "-q", "--models", "tiny", TEST)) == prefixed
    assert _models(run_pytest("--collect-only", "-q", "-o", "ssm_models=tiny", TEST)) == prefixed
    # the command line wins over the ini file
    assert _models(run_pytest("--collect-only", "-q", "-o", "ssm_models=synthetic", "--ssm-models", "tiny", TEST)) \
        == prefixed


@pytest.mark.parametrize("args, message", [
    (["--ssm-models", "huge"], "invalid choice 'huge'; valid: auto, tiny, synthetic, pretrained"),
    (["-o", "ssm_models=huge"], "ini option ssm_models = 'huge': invalid choice 'huge'; valid: auto, tiny"),
    (["-o", "ssm_backends=eager,fast"], "ini option ssm_backends = 'eager,fast': unknown backend fast; valid: eager"),
    (["-o", "ssm_contexts=abc"], "ini option ssm_contexts = 'abc'"),
    (["-o", "ssm_memory_compare_fail=abc"], "ini option ssm_memory_compare_fail = 'abc'"),
    (["--memory-compare-fail", "nan"], "expected a percentage > 0, got 'nan'"),
    (["--ssm-calibrate", "--ssm-batch-sizes", "1,4", "--ssm-calibrate-batches", "3"],
     "--ssm-calibrate-batches 3: only what the sweep runs can be calibrated; --ssm-batch-sizes here: 1,4"),
    (["--ssm-calibrate", "--ssm-contexts", "32,128", "--ssm-calibrate-contexts", "999"],
     "--ssm-calibrate-contexts 999: only what the sweep runs can be calibrated; --ssm-contexts here: 32,128"),
    (["--ssm-calibrate-batches", "1"], "--ssm-calibrate-batches 1 calibrates nothing without --ssm-calibrate"),
])
def test_bad_values_are_usage_errors_naming_the_valid_ones(args, message):
    run = run_pytest("--collect-only", "-q", *args, TEST)
    assert run.returncode == 4 and message in run.stderr, run.stdout[-1500:] + run.stderr[-1500:]
    assert "Traceback" not in run.stdout + run.stderr and "ERROR collecting" not in run.stdout, run.stdout[-1500:]


def test_the_header_names_each_models_source_and_path():
    from ssmbench.registry import ARCHS

    path = ARCHS["mamba"].tiny_path
    run = run_pytest("--collect-only", "--ssm-models", "auto", f"--ssm-model-path=mamba={path}", TEST)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert f"ssmbench:   pretrained-mamba: pretrained, {path}" in run.stdout
    assert "ssmbench:   synthetic-phi: microsoft/phi-2's configuration, random weights" in run.stdout


@pytest.mark.parametrize("option, where, message", [
    ("--ssm-results-file", "{tmp}", "is a folder, not a file"),
    ("--ssm-results-file", "{tmp}/a_file/points.json", "is a file: "),
    ("--ssm-results-file", "{tmp}/read_only/points.json", "is not writable"),
    ("--scaling-report", "{tmp}/a_file", "is a file, not a folder"),
])
def test_output_paths_are_checked_before_anything_runs(tmp_path, option, where, message):
    import os

    if os.geteuid() == 0 and "read_only" in where:
        pytest.skip("root writes into a read-only folder: the check cannot be seen failing as root")
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "read_only").mkdir()
    (tmp_path / "read_only").chmod(0o500)
    run = run_pytest("--collect-only", "-q", option, where.format(tmp=tmp_path), TEST)
    assert run.returncode == 4 and message in run.stderr, run.stdout[-1500:] + run.stderr[-1500:]


def test_duplicate_values_are_dropped_keeping_the_order():
    from pytest_ssmbench import options

    assert options.int_list("2048,512,2048,512") == [2048, 512]
    assert options.backends("eager,graphed,eager") == ["eager", "graphed"]


def test_throughput_runs_at_the_smallest_context_and_a_spaced_results_path_keeps_the_plugin(tmp_path):
    """A results file whose path has a space, once it exists, moved pytest's rootdir and the suite's options
    became unknown (exit 4): the installed plugin is found whatever the rootdir."""
    from ssmbench.results import ResultStore

    points = tmp_path / "a b" / "points.json"
    points.parent.mkdir()
    points.write_text('{"points": []}')  # an existing results file (one that is not is refused: test_hostile)
    run = run_pytest("-m", "benchmark", "--ssm-models", "tiny", "--benchmark-disable", "--ssm-contexts", "64,32",
                     "-k", "test_throughput and bs1 and tiny-phi", "--ssm-results-file", str(points))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert [p.context for p in ResultStore.read(points).points] == [32]


def test_a_report_that_cannot_be_written_hides_nothing(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from pytest_ssmbench import summary
    from ssmbench import results

    def full(store, folder):
        raise OSError(28, "No space left on device")

    lines = []
    monkeypatch.setattr(results, "write_report", full)
    summary.write_report(SimpleNamespace(write_line=lambda line, **kw: lines.append(line)), results.ResultStore(),
                         tmp_path)
    assert lines == [f"scaling report not written to {tmp_path}: OSError: [Errno 28] No space left on device"]


def test_bench_rounds_auto_from_the_command_line_reaches_the_sweep(tmp_path):
    """'auto' parsed to None read as 'not given', and the default of 3 rounds ran instead."""
    from ssmbench.results import ResultStore

    points = tmp_path / "points.json"
    run = run_pytest("-m", "benchmark", "--ssm-models", "tiny", "--bench-rounds", "auto", "--bench-max-time", "1",
                     "-k", "test_latency_prefill and ctx32 and tiny-phi", f"--ssm-results-file={points}")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    (point,) = ResultStore.read(points).points
    assert point.timing.pilot_rounds == 3 and point.timing.target_met is not None


@pytest.mark.parametrize("args, preset, dots", [
    ([], None, "ieee"),  # the tiny models run in float32: Triton's dots too (Mamba-2's SSD kernels)
    (["--ssm-dtype", "bfloat16"], None, "tf32"),  # no float32 model: Triton's default left alone
    ([], "tf32", "tf32"),  # a value the user set stays
])
def test_triton_float32_dots_are_ieee_when_float32_models_may_run(args, preset, dots):
    env = {"TRITON_F32_DEFAULT": preset} if preset else {}
    run = run_pytest("--collect-only", *args, TEST, env_extra=env, drop_env=("TRITON_F32_DEFAULT",))
    assert run.returncode == 0, run.stdout[-1500:] + run.stderr[-1500:]
    assert f"Triton float32 dots {dots})" in run.stdout, run.stdout[:1500]


@pytest.mark.quick
def test_the_options_reference_is_generated_from_the_definitions():
    """docs/options.md is what `ssmbench options-doc` prints from the code: an option added, renamed or retold
    in pytest_ssmbench/options.py without regenerating the file fails here."""
    from pathlib import Path

    from ssmbench.commands.options_doc import reference_markdown

    docs = Path(__file__).resolve().parents[2] / "docs" / "options.md"
    assert docs.read_text() == reference_markdown(), "regenerate: ssmbench options-doc > docs/options.md"
