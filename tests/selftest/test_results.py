"""Result store, fits and crossovers: the figures the summary and report print."""

import json
import os
import sys

import pytest

from ssmbench import results
from ssmbench import store as store_module
from ssmbench.point import Point

pytestmark = [pytest.mark.quick, pytest.mark.selftest]


def test_loglog_slope_recovers_exponents():
    xs = [512, 1024, 2048, 4096]
    assert results.loglog_slope(xs, [3 * x for x in xs]) == pytest.approx(1.0)
    assert results.loglog_slope(xs, [7.0] * 4) == pytest.approx(0.0, abs=1e-9)
    assert results.loglog_slope(xs, [x * x for x in xs]) == pytest.approx(2.0)
    assert results.loglog_slope(xs[:2], [1, 2]) is None  # too few points to call a shape


@pytest.mark.parametrize("a, b, expected", [
    ([1, 1, 1], [2, 2, 2], "everywhere in 1-4; 2.00x at 4"),
    ([3, 3, 3], [1, 1, 1], "nowhere in 1-4; 0.33x at 4"),
    ([3, 1, 1], [2, 2, 2], "from 2 tokens (range 1-4); 2.00x at 4"),
    ([1, 3, 1], [2, 2, 2], "from 4 tokens (range 1-4); 2.00x at 4"),
    ([1, 1, 3], [2, 2, 2], "not at the longest context, 4 (range 1-4); 0.67x at 4"),
])
def test_crossover(a, b, expected):
    assert results.crossover([1, 2, 4], a, [1, 2, 4], b) == expected


def test_crossover_at_a_single_common_context_says_so():
    """One context both measured (phi-2's decode energy on the H200: only its 131072-token window was long
    enough): a yes or no there, not "everywhere in 131072-131072"."""
    assert results.crossover([4, 8], [1, 1], [8], [3]) == "yes at 8, the only context measured for both; 3.00x at 8"
    assert results.crossover([8], [4], [8], [2]) == "no at 8, the only context measured for both; 0.50x at 8"


def _pt(model, family, kind, context, backend="eager", status="ok", **figures):
    """A point from flat (version-1) fields, as a results file of the first schema holds them."""
    return Point.from_json({"model": model, "family": family, "source": "synthetic", "kind": kind,
                            "context": context, "backend": backend, "status": status, "batch": 1, "params": 10**9,
                            "dtype": "bfloat16", "new_tokens": 32, **figures})


def _store(points):
    store = results.ResultStore()
    for p in points:
        store.add(p)
    return store


def test_out_of_memory_is_reported_as_such_never_as_the_other_model_winning():
    store = _store([_pt("m", "ssm", "prefill", c, median_s=3.0) for c in (1, 2, 4)]
                   + [_pt("t", "attention", "prefill", c, median_s=1.0) for c in (1, 2)]
                   + [_pt("t", "attention", "prefill", 4, status="oom")])
    found = results.crossovers(store)["m vs t"]["faster (prefill)"]
    assert found == "nowhere in 1-2; 0.33x at 2; t out of memory at 4"


def test_decode_crossovers_per_backend_and_best_vs_best():
    store = _store(
        [_pt("m", "ssm", "decode", c, "eager", decode_s_per_token=0.05) for c in (1, 2, 4)]
        + [_pt("m", "ssm", "decode", c, "graphed", decode_s_per_token=0.004) for c in (1, 2, 4)]
        + [_pt("t", "attention", "decode", c, "eager", decode_s_per_token=0.03) for c in (1, 2, 4)]
        + [_pt("t", "attention", "decode", c, "compiled", decode_s_per_token=t) for c, t in ((1, 0.003), (2, 0.005))]
        + [_pt("t", "attention", "decode", 4, "compiled", status="oom")])
    found = results.crossovers(store)["m vs t"]
    assert found["faster (decode, eager)"] == "nowhere in 1-4; 0.60x at 4"
    assert found["faster (decode, compiled)"] == "only t measured with compiled, not m; t out of memory at 4"
    assert found["faster (decode, graphed)"] == "only m measured with graphed, not t"
    # best vs best: Mamba's graph against phi's compile where it ran, its eager at 4 (compiled ran out of memory)
    assert found["faster (decode, best vs best)"] == (
        "from 2 tokens (range 1-4); 7.50x at 4 [best: m graphed, t compiled/eager]")


def test_a_model_measured_without_a_figure_is_not_called_unmeasured():
    """The H200's eager decodes of Qwen2 and Llama ran but gave no energy (windows under the counter's 1 s): the
    crossover says so, with the points' reason, instead of 'only mamba2 measured with eager'."""
    note = "shortest window 0.82 s < 1 s: NVML's energy counter (~100 ms updates) cannot resolve it"
    store = _store([_pt("m", "ssm", "decode", c, decode_s_per_token=0.05, joules_per_token=6.5) for c in (1, 2)]
                   + [_pt("t", "attention", "decode", c, decode_s_per_token=0.03, energy_note=note) for c in (1, 2)])
    found = results.crossovers(store)["m vs t"]["leaner (energy per token (decode), eager)"]
    assert found == f"no energy per token (decode) figure for t with eager (2 points ran; at 2: {note}), only for m"


def test_contexts_past_the_trained_one_are_labelled_timing_only():
    store = _store([_pt("t", "attention", "prefill", c, median_s=1.0, trained_context=2) for c in (1, 2, 4)])
    lines = results.summary_lines(store)
    assert [line.split("|")[0].strip() for line in lines if "|" in line and "context" not in line] == ["1", "2", "4*"]
    assert any("beyond the trained context (2 tokens): timing and memory only" in line for line in lines)


def test_points_spreading_wider_than_5_percent_are_flagged_with_their_rounds():
    store = _store([_pt("m", "ssm", "decode", 1, rounds_spread=0.02, step_spread=0.01, rounds=3),
                    _pt("m", "ssm", "decode", 2, rounds_spread=0.12, step_spread=0.03, rounds=9, pilot_rounds=3,
                        ci95=0.04, target=0.05, target_met=True),
                    _pt("m", "ssm", "decode", 4, rounds_spread=0.04, step_spread=0.03, rounds=3, pilot_rounds=3,
                        ci95=0.09, target=0.05, target_met=False)])
    lines = results.spread_lines(store)
    assert lines[0].startswith("spread over 5 % in 2 of 3 points")
    assert lines[1] == ("  m decode @ 2 (eager): rounds 12.0 %, steps 3.0 %, 9 rounds (auto, after 3 pilot rounds: "
                        "95 % interval +-4.0 %)")
    assert lines[2].endswith("3 rounds (auto, after 3 pilot rounds: 95 % interval +-9.0 %, target 5.0 % not met)")


def test_rounds_for_precision_follows_the_spread_and_the_time_cap():
    from ssmbench.runs import ci95, rounds_for_precision

    steady, noisy = [1.0, 1.01, 0.99], [1.0, 1.3, 0.8]
    assert rounds_for_precision(steady, 0.05, round_s=1.0, max_time_s=60) == 3
    wanted = rounds_for_precision(noisy, 0.05, round_s=1.0, max_time_s=600)
    assert wanted > 10 and ci95(noisy * (wanted // 3)) < ci95(noisy)
    assert rounds_for_precision(noisy, 0.05, round_s=1.0, max_time_s=5) == 5  # the time cap wins


def test_store_rewrites_file_after_every_point(tmp_path):
    store = results.ResultStore(tmp_path / "points.json", {"device": "x"})
    store.add(Point("m", "prefill", 1, 1, 1))
    store.add(Point("m", "prefill", 2, 1, 1))
    saved = json.loads((tmp_path / "points.json").read_text())
    assert [p["context"] for p in saved["points"]] == [1, 2] and saved["meta"] == {"device": "x"}
    assert saved["schema"] == 2 and results.ResultStore.read(tmp_path / "points.json").points == store.points


def test_points_read_back_from_both_schemas_and_a_misspelt_field_is_an_error():
    flat = {"model": "m", "kind": "decode", "context": 8, "batch": 1, "new_tokens": 4, "ttft_s": 0.5,
            "extra_peak_bytes": 7, "mfu": 0.1, "joules_per_token": 2.0, "calibration_failures": ["x"]}
    point = Point.from_json(flat)
    assert (point.timing.ttft_s, point.memory.extra_peak_bytes, point.roofline.mfu) == (0.5, 7, 0.1)
    assert point.energy.joules_per_token == 2.0 and point.calibration_failures == ["x"]
    assert Point.from_json(point.to_json()) == point and point.flat()["ttft_s"] == 0.5
    with pytest.raises(ValueError, match="unknown point field.*tfft_s"):
        Point.from_json(flat | {"tfft_s": 0.5})
    with pytest.raises(KeyError, match="no figure 'decode_ms'"):
        point.figure("decode_ms")


def test_the_committed_h200_points_read_as_typed_points():
    from pathlib import Path

    store = results.ResultStore.read(Path(__file__).parents[2] / "baselines" / "h200" / "points-synthetic-bf16.json")
    assert len(store.points) > 40 and all(p.timing.median_s for p in store.points if p.ok)
    assert any(line.startswith("crossovers, synthetic-mamba vs synthetic-phi") for line in results.summary_lines(store))


def test_every_ssm_is_paired_with_every_attention_model_and_named_in_its_crossovers():
    store = results.ResultStore()
    for model, arch, family, times in [("tiny-mamba", "mamba", "ssm", (2.0, 3.0)),
                                       ("tiny-mamba2", "mamba2", "ssm", (0.5, 1.0)),
                                       ("tiny-phi", "phi", "attention", (1.0, 4.0))]:
        for context, t in zip((16, 64), times, strict=True):
            p = Point(model, "prefill", context, 1, 1, arch=arch, family=family, source="tiny")
            p.timing.median_s = t
            store.add(p)
    lines = results.summary_lines(store)
    assert results.pairs(store) == [("tiny-mamba", "tiny-phi"), ("tiny-mamba2", "tiny-phi")]
    assert "  Mamba faster (prefill): from 64 tokens (range 16-64); 1.33x at 64" in lines, lines
    assert "  mamba2 faster (prefill): everywhere in 16-64; 4.00x at 64" in lines, lines


def test_each_ssm_and_hybrid_is_paired_with_the_attention_model_of_its_size():
    """By the published size of the model a point stands for (a tiny model stands for its full-size architecture):
    the 9.8B Bamba with an 8B Transformer, Mamba 2.8B with phi-2, not with every attention model of the run."""
    store = results.ResultStore()
    for model, arch, family, size in [("tiny-mamba", "mamba", "ssm", 2.77e9), ("tiny-bamba", "bamba", "hybrid", 9.78e9),
                                      ("tiny-phi", "phi", "attention", 2.78e9),
                                      ("tiny-llama", "llama", "attention", 3.21e9),
                                      ("tiny-llama8b", "llama8b", "attention", 8.03e9)]:
        for context, t in ((16, 1.0), (64, 2.0)):
            p = Point(model, "prefill", context, 1, 1, arch=arch, family=family, source="tiny", params=160_000,
                      size_params=size)
            p.timing.median_s = t
            store.add(p)
    assert results.pairs(store) == [("tiny-mamba", "tiny-phi"), ("tiny-bamba", "tiny-llama8b")]
    lines = results.summary_lines(store)
    assert ("pairs, each SSM or hybrid with the attention model of its size: tiny-mamba (2.77B) with tiny-phi "
            "(2.78B); tiny-bamba (9.78B) with tiny-llama8b (8.03B)") in lines, lines
    assert not any(line.startswith("crossovers, tiny-mamba vs tiny-llama") for line in lines), lines


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


def _p(context):
    return Point("m", "prefill", context, 1, 1)


def test_processes_of_one_run_merge_their_points_in_one_file(tmp_path):
    """xdist workers wrote one results file each with its own points only: 18 measured, 8 kept."""
    path = tmp_path / "points.json"
    gw0 = results.ResultStore(path, run="r1", writer="gw0")
    gw1 = results.ResultStore(path, run="r1", writer="gw1")
    for context in (1, 2, 3):
        gw0.add(_p(context))
        gw1.add(_p(10 * context))
    assert sorted(p.context for p in results.ResultStore.read(path).points) == [1, 2, 3, 10, 20, 30]


def test_a_file_another_run_took_is_not_overwritten(tmp_path):
    path = tmp_path / "points.json"
    first, second = results.ResultStore(path, run="aaa"), results.ResultStore(path, run="bbb")
    first.add(_p(1))
    second.add(_p(2))  # a new run takes the file over, as a new run always did
    first.add(_p(3))  # ... and the first run's points then go beside it, all of them
    assert first.moved_to == tmp_path / "points.aaa.json"
    assert [p.context for p in results.ResultStore.read(path).points] == [2]
    assert [p.context for p in results.ResultStore.read(first.moved_to).points] == [1, 3]
    # the earlier run's points the new one replaced are kept beside the file, and the new run says so
    assert second.replaced == (1, tmp_path / "points.json.aaa.previous")
    assert [p.context for p in results.ResultStore.read(second.replaced[1]).points] == [1]
    assert first.replaced is None, "the first run replaced nothing"
    assert sorted(f.name for f in tmp_path.glob("*points*.json")) == ["points.aaa.json", "points.json"], (
        "the kept copy must not read as a results file of a folder")


def test_every_earlier_run_is_kept_and_every_claim_is_true(tmp_path):
    """Three runs in a row keep both earlier files (one .previous slot lost the first); two runs started together
    keep the file that was there before both, and each one's claim names a file that holds what it says."""
    path = tmp_path / "points.json"
    for run, context in (("r1", 1), ("r2", 2), ("r3", 3)):
        results.ResultStore(path, run=run).add(_p(context))
    kept = sorted(tmp_path.glob("points.json.*.previous"))
    assert [f.name for f in kept] == ["points.json.r1.previous", "points.json.r2.previous"]
    assert [[p.context for p in results.ResultStore.read(f).points] for f in kept] == [[1], [2]]
    a, b = results.ResultStore(path, run="a"), results.ResultStore(path, run="b")
    a.add(_p(10))  # keeps r3's file
    b.add(_p(20))  # keeps a's file, a's later points go beside
    a.add(_p(11))
    for store in (a, b):
        count, backup = store.replaced
        assert len(results.ResultStore.read(backup).points) == count
    assert [p.context for p in results.ResultStore.read(a.replaced[1]).points] == [3]
    assert [p.context for p in results.ResultStore.read(a.moved_to).points] == [10, 11]


def test_a_failed_write_is_said_once_and_nothing_claims_it_was_written(tmp_path, monkeypatch):
    """A full disk (or any failed write): one warning, no traceback per point, and the store says nothing was
    written; the points stay in memory for the summary."""
    path = tmp_path / "points.json"
    store = results.ResultStore(path, run="r")

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module, "atomic_write_text", full)
    with pytest.warns(UserWarning, match="No space left on device") as caught:
        store.add(_p(1))
        store.add(_p(2))
    assert len(caught) == 1 and store.written_to is None and "No space left" in store.write_error
    assert len(store.points) == 2 and not path.exists()


@pytest.mark.parametrize("content", ['{"points": [', '{"machine_info": {}, "benchmarks": []}', "my notes\n"])
def test_a_file_that_is_not_a_points_file_is_never_overwritten(tmp_path, content):
    path = tmp_path / "notes.json"
    path.write_text(content)
    assert "not a points file" in results.check_results_path(path)
    store = results.ResultStore(path, run="r")
    with pytest.warns(UserWarning, match="not a points file"):
        store.add(_p(1))
    assert path.read_text() == content and store.written_to is None


def test_the_lock_and_the_file_are_never_written_through_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    path = tmp_path / "points.json"
    (tmp_path / ".points.json.lock").symlink_to(victim)
    store = results.ResultStore(path, run="r")
    with pytest.warns(UserWarning, match="lock file"):
        store.add(_p(1))
    assert victim.read_text() == "precious"
    (tmp_path / ".points.json.lock").unlink()
    path.symlink_to(victim)
    assert "symbolic link" in results.check_results_path(path)
    with pytest.warns(UserWarning, match="symbolic link"):
        results.ResultStore(path, run="s").add(_p(1))
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("field, value, message", [
    ("context", "<script>alert(1)</script>", "context"), ("context", 0, "context"),
    ("timing.median_s", float("nan"), "finite"), ("timing.median_s", -1.0, "negative"),
    ("memory.extra_peak_bytes", 1.5, "integer"), ("model", 7, "string")])
def test_points_are_validated_on_load(tmp_path, field, value, message):
    point = _p(1).to_json()
    part, _, name = field.rpartition(".")
    (point[part] if part else point)[name] = value
    path = tmp_path / "points.json"
    path.write_text(json.dumps({"schema": 2, "run": "r", "meta": {}, "points": [point]}))
    with pytest.raises(results.InvalidPoints, match=message):
        results.ResultStore.read(path)


def test_a_point_twice_in_one_file_is_refused(tmp_path):
    path = tmp_path / "points.json"
    path.write_text(json.dumps({"schema": 2, "run": "r", "meta": {}, "points": [_p(1).to_json()] * 2}))
    with pytest.raises(results.InvalidPoints, match="repeats point 0"):
        results.ResultStore.read(path)


_PATHS = {"eager": "transformers generate(), eager", "compiled": "transformers generate(), static cache compiled",
          "graphed": "suite CUDA graph of the one-token step",
          "native": "mamba_ssm MambaLMHeadModel, its CUDA graph (generate(cg=True)'s)"}


def _tp(model, family, batch, backend="eager", tokens_per_s=None, status="ok", prompt=2048, decode=None):
    p = _pt(model, family, "throughput", prompt, backend, status, tokens_per_s=tokens_per_s,
            decode_tokens_per_s=decode, decode_path=_PATHS[backend])
    p.batch = batch
    return p


def test_throughput_verdict_by_batch_with_the_transformer_out_of_memory():
    """The Mamba paper's claim, as the summary states it: from which batch Mamba generates more tokens per
    second, how much more at the largest batch both ran, how far each ran and its most tokens per second, and
    where each ran out of memory -- never the Transformer's out of memory read as Mamba winning there."""
    store = _store(
        [_tp("m", "ssm", n, tokens_per_s=v) for n, v in ((1, 15), (8, 160), (32, 550), (128, 1900))]
        + [_tp("m", "ssm", 256, status="oom")]
        + [_tp("t", "attention", n, tokens_per_s=v) for n, v in ((1, 38), (8, 320), (32, 275))]
        + [_tp("t", "attention", 128, status="oom")]
        + [_tp("m", "ssm", n, "graphed", v) for n, v in ((1, 250), (8, 1500), (32, 2900))]
        + [_tp("t", "attention", n, "compiled", v) for n, v in ((1, 200), (8, 1400), (32, 1000))])
    found = results.crossovers(store)["m vs t"]
    assert found["higher throughput, end to end (eager, prompt 2048, by batch)"] == (
        "from batch 32 (range 1-32); 2.00x at batch 32, the largest both ran; m up to batch 128 (most 1900 "
        "tokens/s, at 128), t up to batch 32 (most 320 tokens/s, at 8); each at its most: 5.94x; m out of memory "
        "from batch 256; t out of memory from batch 128")
    assert found["higher throughput, end to end (compiled, prompt 2048, by batch)"] == (
        "only t measured with compiled, not m; t up to batch 32 (most 1400 tokens/s, at 8)")
    assert found["higher throughput, end to end (best vs best, prompt 2048, by batch)"] == (
        "everywhere in 1-32; 2.90x at batch 32, the largest both ran; m up to batch 128 (most 2900 tokens/s, at "
        "32), t up to batch 32 (most 1400 tokens/s, at 8); each at its most: 2.07x; m out of memory from batch "
        "256; t out of memory from batch 128 [best: m eager/graphed, t compiled]")
    # behind generate(): Mamba's graph (the suite's) left out, so its eager against phi-2's compiled
    assert found["higher throughput, end to end (best behind generate(), prompt 2048, by batch)"].startswith(
        "nowhere in 1-32; 0.55x at batch 32, the largest both ran; m up to batch 128 (most 1900 tokens/s, at 128)")
    # a backend's out of memory where another backend ran that batch does not limit the best
    store.add(_tp("m", "ssm", 256, "graphed", 4000))
    best = results.crossovers(store)["m vs t"]["higher throughput, end to end (best vs best, prompt 2048, by batch)"]
    assert "m out of memory" not in best and "t out of memory from batch 128" in best


def test_throughput_rows_give_memory_over_the_weights_with_what_a_graph_holds():
    """A graph's static state sits outside its calls' extra peak; the table adds it, so a graphed row and an
    eager one (whose cache is inside the call) compare."""
    graphed, eager = _tp("m", "ssm", 8, "graphed", 100.0), _tp("m", "ssm", 8, "eager", 50.0)
    graphed.memory.extra_peak_bytes, graphed.memory.backend_held_bytes = 1_000_000_000, 3_000_000_000
    eager.memory.extra_peak_bytes, eager.memory.backend_held_bytes = 2_000_000_000, 0
    lines = results.throughput_lines(_store([graphed, eager]), "m")
    rows = [line for line in lines if line.strip().startswith("8 |")]
    assert [r.split(" | ")[4:6] for r in rows] == [["2.00", "2.00"], ["1.00", "4.00"]], lines


def test_a_throughput_only_report_has_no_empty_context_plots(tmp_path):
    store = _store([_tp(m, f, n, tokens_per_s=10.0 * n, decode=12.0 * n) for m, f in (("m", "ssm"), ("t", "attention"))
                    for n in (1, 2)])
    store.meta = {"dtype": "auto"}
    written = results.write_report(store, tmp_path)
    assert sorted(p.name for p in written) == ["README.md", "throughput-2048.png"]
    text = (tmp_path / "README.md").read_text()
    assert "log-log slope" not in text
    assert "- dtype: auto: m bfloat16, t bfloat16" in text  # what each model resolved the option to


def test_a_report_into_a_used_folder_leaves_no_plot_of_the_earlier_run(tmp_path):
    """--report into a folder an earlier report wrote: its plots this run does not draw (another prompt, context
    plots of a sweep this run did not make) are removed, so none is read as this run's; other files stay."""
    earlier = _store([_pt(m, f, "prefill", c, median_s=1.0) for m, f in (("m", "ssm"), ("t", "attention"))
                      for c in (1, 2)] + [_tp("m", "ssm", n, tokens_per_s=10.0 * n) for n in (1, 2)])
    results.write_report(earlier, tmp_path)
    assert {"prefill.png", "throughput-2048.png"} <= {p.name for p in tmp_path.iterdir()}
    (tmp_path / "notes.png").write_bytes(b"mine")
    later = _store([_tp("m", "ssm", n, prompt=8192, tokens_per_s=10.0 * n) for n in (1, 2)])
    written = results.write_report(later, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*(p.name for p in written), "notes.png", ".ssmbench-report"]) == [
        ".ssmbench-report", "README.md", "notes.png", "throughput-8192.png"]


def test_a_report_writes_only_into_an_empty_folder_or_one_a_report_made(tmp_path):
    """A user's folder (their README.md and a plot named like the report's) is refused before anything in it is
    touched; an empty one is claimed with a marker; a link planted at a plot's name is replaced, not written
    through."""
    store = _store([_pt(m, f, "prefill", c, median_s=1.0) for m, f in (("m", "ssm"), ("t", "attention"))
                    for c in (1, 2)])
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("my notes")
    (mine / "prefill.png").write_bytes(b"my plot")
    with pytest.raises(results.UnsafeOutput, match="not empty and holds no .ssmbench-report"):
        results.write_report(store, mine)
    assert (mine / "README.md").read_text() == "my notes" and (mine / "prefill.png").read_bytes() == b"my plot"
    report = tmp_path / "report"
    results.write_report(store, report)
    victim = tmp_path / "victim"
    victim.write_bytes(b"root's file")
    (report / "prefill.png").unlink()
    (report / "prefill.png").symlink_to(victim)
    results.write_report(store, report)
    assert victim.read_bytes() == b"root's file" and not (report / "prefill.png").is_symlink()


def test_names_from_a_points_file_cannot_inject_markdown_or_html(tmp_path):
    """Outside the summary's fenced block every name is escaped; inside it, text is literal and nothing can
    close the fence early."""
    evil = "```\n![x](http://attacker/x.png)<img src=x onerror=alert(1)>"
    store = _store([_pt(n, f, "prefill", c, median_s=1.0) for n, f in ((evil, "ssm"), ("t", "attention"))
                    for c in (1, 2)])
    store.meta["device"] = "<script>alert(1)</script>"
    results.write_report(store, tmp_path)
    text = (tmp_path / "README.md").read_text()
    before, block, after = text.split("```\n", 1)[0], *text.split("```\n", 1)[1].split("\n```\n", 1)
    assert "```" not in block
    for outside in (before, after):
        assert "![x](" not in outside and "<img" not in outside and "<script>" not in outside, outside


def test_throughput_verdict_of_decode_alone_is_its_own_line():
    """A prefill Mamba is slower at can decide the end-to-end verdict while its decode wins: the decode-only
    tokens per second get their own line, so the summary says both."""
    store = _store([_tp("m", "ssm", n, tokens_per_s=e, decode=d) for n, e, d in ((1, 30, 40), (8, 200, 400))]
                   + [_tp("t", "attention", n, tokens_per_s=e, decode=d) for n, e, d in ((1, 35, 36), (8, 240, 250))])
    found = results.crossovers(store)["m vs t"]
    assert found["higher throughput, end to end (eager, prompt 2048, by batch)"].startswith("nowhere in 1-8; 0.83x")
    assert found["higher throughput, decode only (eager, prompt 2048, by batch)"].startswith(
        "everywhere in 1-8; 1.60x at batch 8")


def test_decode_best_vs_best_has_a_line_behind_generate_where_a_backend_is_not():
    store = _store(
        [_pt("m", "ssm", "decode", c, "eager", decode_s_per_token=0.05, decode_path=_PATHS["eager"]) for c in (1, 2)]
        + [_pt("m", "ssm", "decode", c, "graphed", decode_s_per_token=0.004, decode_path=_PATHS["graphed"])
           for c in (1, 2)]
        + [_pt("t", "attention", "decode", c, "compiled", decode_s_per_token=0.006, decode_path=_PATHS["compiled"])
           for c in (1, 2)])
    found = results.crossovers(store)["m vs t"]
    assert found["faster (decode, best vs best)"].startswith("everywhere in 1-2; 1.50x at 2 [best: m graphed")
    assert found["faster (decode, best behind generate())"].startswith("nowhere in 1-2; 0.12x at 2 [best: m eager")


def _summarize_script():
    """ssmbench summarize's module."""
    from ssmbench.commands import summarize

    return summarize


def test_summarize_script_reads_a_stored_baseline_and_refuses_other_files(tmp_path, capsys):
    """ssmbench summarize: the committed H200 points, summarised with the current code (crossovers with the
    ratio at the longest context both ran), the report written; a file that is not a results file is refused
    with exit 2, naming it."""
    summarize = _summarize_script()
    store = _store([_pt("m", "ssm", "prefill", c, median_s=t) for c, t in ((1, 2.0), (2, 1.0))]
                   + [_pt("t", "attention", "prefill", c, median_s=1.5) for c in (1, 2)])
    store.path = tmp_path / "points.json"
    store._write()
    assert summarize.main([str(store.path), "--report", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    expected = "faster (prefill): from 2 tokens (range 1-2); 1.50x at 2"
    assert any(line.endswith(expected) for line in out.splitlines()), out
    assert (tmp_path / "report" / "prefill.png").stat().st_size > 0
    (tmp_path / "other.json").write_text('{"benchmarks": []}')
    for bad in (tmp_path / "other.json", tmp_path / "missing.json"):
        with pytest.raises(SystemExit) as exit_:
            summarize.main([str(bad)])
        assert exit_.value.code == 2 and str(bad) in capsys.readouterr().err


def test_summarize_script_merges_runs_of_one_device_and_refuses_a_point_twice_or_another_device(tmp_path, capsys):
    """Runs split over sessions (one model's points in each file) summarise as one run: the crossover needs both
    files. A point in two files, or files from two devices, transformers releases or Mamba implementations (the
    kernels' graphed decode beside the reference loop's under one header) are refused with exit 2 naming the
    files."""
    summarize = _summarize_script()

    def write(name, points, device="GPU A", impl="cuda-kernels", transformers=None):
        store = _store(points)
        store.meta = {"device": device, "torch": "2.11", "models": ",".join(sorted({p.model for p in points})),
                      "mamba_impl": impl, **({"transformers": transformers} if transformers else {})}
        store.path = tmp_path / name
        store._write()
        return str(store.path)

    ssm = write("m.json", [_pt("m", "ssm", "prefill", c, median_s=t) for c, t in ((1, 2.0), (2, 1.0))])
    attn = write("t.json", [_pt("t", "attention", "prefill", c, median_s=1.5) for c in (1, 2)])
    assert summarize.main([ssm, attn]) == 0
    out = capsys.readouterr().out
    assert any(line.endswith("faster (prefill): from 2 tokens (range 1-2); 1.50x at 2") for line in out.splitlines())
    other = write("other.json", [_pt("t", "attention", "prefill", 4, median_s=1.5)], device="GPU B")
    loop = write("loop.json", [_pt("t", "attention", "prefill", 8, median_s=1.5)], impl="torch-reference")
    old = write("old.json", [_pt("t", "attention", "prefill", 16, median_s=1.5)], transformers="4.46.3")
    new = write("new.json", [_pt("t", "attention", "prefill", 32, median_s=1.5)], transformers="5.17.0")
    assert summarize.main([ssm, attn, new]) == 0  # a file from before headers named transformers merges
    capsys.readouterr()
    # --write: the merged run as one results file (a baseline of a split sweep), read back whole; never overwritten
    merged = tmp_path / "merged.json"
    assert summarize.main([ssm, attn, "--write", str(merged)]) == 0
    back = results.ResultStore.read(merged)
    assert sorted((p.model, p.context) for p in back.points) == [("m", 1), ("m", 2), ("t", 1), ("t", 2)]
    assert back.meta["merged_from"] == [ssm, attn] and back.meta["models"] == "m,t"
    assert summarize.main([str(merged)]) == 0 and "1.50x at 2" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        summarize.main([ssm, "--write", str(merged)])
    assert exit_.value.code == 2 and "exists" in capsys.readouterr().err
    # a path under a file, even root cannot write: a usage error after the summary, not a traceback
    for option, target, says in (("--write", f"{ssm}/merged.json", "merged points not written"),
                                 ("--report", ssm, "is a file, not a folder")):
        with pytest.raises(SystemExit) as exit_:
            summarize.main([ssm, attn, option, target])
        assert exit_.value.code == 2 and says in capsys.readouterr().err
    for files, says in (([ssm, attn, ssm], "is in both"), ([ssm, other], "only runs of one device"),
                        ([ssm, loop], "mamba_impl 'torch-reference'"), ([old, new], "transformers '5.17.0'"),
                        # a file without the key first, then two releases: the third against the second's
                        ([ssm, new, old], "new.json with '5.17.0'")):
        with pytest.raises(SystemExit) as exit_:
            summarize.main(files)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and says in err and files[-1] in err, err


def test_summarize_script_writes_its_files_when_its_reader_is_gone(tmp_path, monkeypatch):
    """summarize.py ... --write F --report D | head: the reader gone mid-summary (BrokenPipeError on a print) does
    not cost the merged file or the report (on 2026-11-29 the merged file was lost so)."""
    summarize = _summarize_script()
    store = _store([_pt("m", "ssm", "prefill", c, median_s=t) for c, t in ((1, 2.0), (2, 1.0))]
                   + [_pt("t", "attention", "prefill", c, median_s=1.5) for c in (1, 2)])
    store.path = tmp_path / "points.json"
    store._write()

    class Gone:  # a pipe whose reader has exited
        def __init__(self):
            self.file = open(tmp_path / "stdout", "w")  # noqa: SIM115 -- closed below

        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

        def fileno(self):
            return self.file.fileno()

    gone = Gone()
    monkeypatch.setattr(sys, "stdout", gone)
    merged, report = tmp_path / "merged.json", tmp_path / "report"
    try:
        assert summarize.main([str(store.path), "--write", str(merged), "--report", str(report)]) == 0
    finally:
        gone.file.close()
    assert len(results.ResultStore.read(merged).points) == 4
    assert (report / "prefill.png").stat().st_size > 0 and (report / "README.md").stat().st_size > 0


def test_what_transformers_leaves_on_the_table_is_native_against_its_best_path():
    """By the path each point records: on 4.x Mamba's "compiled" backend is the suite's graph, not transformers'."""
    from ssmbench.point import NATIVE, SUITE_GRAPH, TRANSFORMERS_EAGER, TRANSFORMERS_STATIC

    def decode(model, context, backend, path, t):
        p = _pt(model, "ssm", "decode", context, backend, decode_s_per_token=t)
        p.decode_path = path
        return p

    store = _store([decode("m", 8, "eager", TRANSFORMERS_EAGER, 0.05),
                    decode("m", 8, "compiled", TRANSFORMERS_STATIC, 0.0048),
                    decode("m", 8, "graphed", SUITE_GRAPH, 0.0046), decode("m", 8, "native", NATIVE, 0.0032),
                    decode("m", 16, "compiled", SUITE_GRAPH, 0.0040),  # 4.x: "compiled" is the suite's graph
                    decode("m", 16, "eager", TRANSFORMERS_EAGER, 0.048), decode("m", 16, "native", NATIVE, 0.0032),
                    decode("m", 32, "native", NATIVE, 0.0033),
                    decode("t", 8, "compiled", TRANSFORMERS_STATIC, 0.004)])
    lines = results.left_on_table_lines(store)
    assert lines[1:] == [
        "  m @ 8: native 3.20 ms; transformers' best 4.80 (compiled): 1.50x; suite graph 4.60: 1.44x",
        "  m @ 16: native 3.20 ms; transformers' best 48.00 (eager): 15.00x; suite graph 4.00: 1.25x",
        "  m @ 32: native 3.30 ms; transformers not measured here"], lines
    assert lines[0].startswith("what transformers leaves on the table") and lines[1:] == [
        line for line in results.summary_lines(store) if line.startswith("  m @ ")]
    assert results.left_on_table_lines(_store([decode("t", 8, "compiled", TRANSFORMERS_STATIC, 0.004)])) == []


def test_batch_verdicts_of_lower_is_better_figures():
    """Time to first token, memory over the weights and energy per token get a verdict by batch too: from which
    batch Mamba's is lower, how many times lower at the largest batch both ran, the Transformer's out of memory
    never read as Mamba winning, and a figure one model lacks said with the point's own reason."""
    def tp(model, family, batch, ttft, peak, joules, backend="eager", note=""):
        p = _tp(model, family, batch, backend, tokens_per_s=1.0)
        p.timing.ttft_s, p.memory.extra_peak_bytes, p.memory.backend_held_bytes = ttft, peak, 0
        p.energy.joules_per_token, p.energy.energy_note = joules, note
        return p

    store = _store(
        [tp("m", "ssm", n, ttft, peak, j) for n, ttft, peak, j in ((1, 0.06, 1e8, 2.0), (8, 0.4, 8e8, 0.5),
                                                                    (64, 3.5, 6e9, 0.1))]
        + [tp("t", "attention", n, ttft, peak, None, note="window 0.50 s < 3 s: too short")
           for n, ttft, peak in ((1, 0.04, 9e8), (8, 0.3, 7e9), (64, 1.8, 5.6e10))]
        + [_tp("t", "attention", 128, status="oom")]
        + [tp("m", "ssm", n, ttft, peak, None, "native") for n, ttft, peak in ((1, 0.05, 2e8), (8, 0.2, 1e9),
                                                                              (64, 1.0, 5e9))])
    found = results.crossovers(store)["m vs t"]
    assert found["faster (time to first token, eager, prompt 2048, by batch)"] == (
        "nowhere in 1-64; 0.51x at batch 64, the largest both ran; t out of memory from batch 128")
    assert found["leaner (memory over the weights, eager, prompt 2048, by batch)"] == (
        "everywhere in 1-64; 9.33x at batch 64, the largest both ran; t out of memory from batch 128")
    assert found["faster (time to first token, best vs best, prompt 2048, by batch)"] == (
        "from batch 8 (range 1-64); 1.80x at batch 64, the largest both ran; t out of memory from batch 128 "
        "[best: m native, t eager]")
    assert found["leaner (energy per token, end to end, eager, prompt 2048, by batch)"] == (
        "no figure for t with eager (3 points ran; window 0.50 s < 3 s: too short), only for m"
        "; t out of memory from batch 128")
    assert found["faster (time to first token, native, prompt 2048, by batch)"] == (
        "only m measured with native, not t")
    assert not any(k.startswith("leaner (energy per token, end to end, native") for k in found), (
        "a line for a figure neither model has")
    # the scaling report's table: a row per figure, a column per backend and best-of pool
    table = results.verdict_tables(store)
    assert "| figure | eager | native | best vs best | best behind generate() |" in table, table
    oom = "; t out of memory from batch 128"
    assert (f"| time to first token | nowhere in 1-64, 0.51x at batch 64{oom} | only m ran it | from batch 8 (range "
            f"1-64), 1.80x at batch 64{oom} | nowhere in 1-64, 0.51x at batch 64{oom} |") in table, table
    assert ("| energy per token, end to end | no figure for t (the summary says why) | n/a | "
            "no figure for t (the summary says why) | as best vs best |") in table, table


def test_a_batch_that_ran_without_the_figure_is_not_out_of_memory_and_no_pool_copies_another():
    """Best of several backends: a batch one backend ran (without an energy figure: its window too short) is not
    'out of memory' because another backend ran out there; and a best-of column where neither model has the
    figure says n/a, not 'as best vs best' (found in review)."""
    def tp(model, family, batch, backend, joules=None, status="ok"):
        p = _tp(model, family, batch, backend, tokens_per_s=1.0, status=status)
        p.timing.ttft_s, p.memory.extra_peak_bytes, p.memory.backend_held_bytes = 0.1, 10**9, 0
        p.energy.joules_per_token = joules
        return p

    store = _store([tp("m", "ssm", n, "native", joules=0.1) for n in (1, 64)]
                   + [tp("m", "ssm", n, "eager") for n in (1, 64)]
                   + [tp("t", "attention", n, "eager") for n in (1, 64)]
                   + [tp("t", "attention", 1, "compiled"), tp("t", "attention", 64, "compiled", status="oom")])
    found = results.crossovers(store)["m vs t"]
    best = found["leaner (energy per token, end to end, best vs best, prompt 2048, by batch)"]
    assert best.startswith("no figure for t") and "out of memory" not in best, best
    table = "\n".join(results.verdict_tables(store))
    row = next(line for line in table.splitlines() if line.startswith("| energy per token"))
    assert row == ("| energy per token, end to end | n/a | n/a | only m ran it "
                   "| no figure for t (the summary says why) | n/a |"), row


def test_a_ratio_inside_the_points_spread_says_so():
    """A 1.01x 'win' between points whose rounds moved 3.5 % (phi-2 against Mamba, eager, batch 128 on the H200) is
    said to be within the spread, in the summary and the table; 1.20x is not."""
    def tp(model, family, batch, tokens_per_s, spread):
        p = _tp(model, family, batch, tokens_per_s=tokens_per_s)
        p.timing.rounds_spread, p.timing.ttft_s = spread, 1.0 / tokens_per_s
        return p

    store = _store([tp("m", "ssm", 1, 10.0, 0.01), tp("m", "ssm", 8, 101.0, 0.035),
                    tp("t", "attention", 1, 20.0, 0.01), tp("t", "attention", 8, 100.0, 0.02)])
    found = results.crossovers(store)["m vs t"]
    line = found["higher throughput, end to end (eager, prompt 2048, by batch)"]
    assert "1.01x at batch 8, the largest both ran (within the points' spread, 3.5 %)" in line, line
    assert "from batch 8 (range 1-8), 1.01x at batch 8 (within the points' spread)" in "\n".join(
        results.verdict_tables(store))
    assert "(within" not in results.crossovers(_store([tp("m", "ssm", 8, 120.0, 0.035),
                                                       tp("t", "attention", 8, 100.0, 0.02)]))["m vs t"][
        "higher throughput, end to end (eager, prompt 2048, by batch)"]


@pytest.mark.quick
def test_budget_reads_a_points_phases_or_estimates_them():
    """``ssmbench budget``: a point's own timestamps where it has them (an out-of-memory point's time is the cost
    of finding the limit), else an estimate from its figures; each model's build counted once."""
    from ssmbench.commands.budget import budget
    from ssmbench.point import Point, Timing

    timed = Point("m", "decode", 512, 1, 8, backend="eager", load_s=2.0,
                  timing=Timing(phases_s={"warmup": 1.5, "rounds": 3.0}))
    again = Point("m", "decode", 1024, 1, 8, backend="eager", load_s=2.0,
                  timing=Timing(phases_s={"warmup": 0.5, "rounds": 1.0, "calibration": 4.0}))
    old = Point("m", "prefill", 512, 1, 1, backend="eager", load_s=2.0,
                timing=Timing(first_call_s=0.3, warmup_calls=3, median_s=0.1, rounds=5))
    oom = Point("m", "throughput", 512, 64, 8, backend="eager", status="oom",
                timing=Timing(phases_s={"release": 0.2, "warmup": 0.8}))
    table, guessed = budget([timed, again, old, oom])
    assert guessed == 1
    assert dict(table["all"]) == pytest.approx({"build": 2.0, "warmup": 1.5 + 0.5 + 0.3 + 2 * 0.1,
                                                "rounds": 4.0 + 0.5, "calibration": 4.0, "out_of_memory": 1.0})
