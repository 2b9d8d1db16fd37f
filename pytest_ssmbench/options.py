"""Command-line options and their ini equivalents. Generic names carry the ``--ssm-`` prefix; the old names
stay as aliases for one release. A value comes from the command line, else from the ini file (``[pytest]
ssm_models = synthetic``, say), else from the default; a bad value is a usage error naming the valid ones."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any, Callable

import pytest

from ssmbench.names import BACKENDS, DTYPE_CHOICES, MODEL_SETS, arch_keys

ARCHS = arch_keys()  # the names only: no torch here (the entry point registers these options in every run)

DEVICE_CHOICES = ("auto", "cpu", "cuda")
KERNEL_CONFIGS = ("auto", "pinned", "autotuned")


def int_list(value: str) -> list[int]:
    """Comma-separated positive integers, duplicates dropped (order kept)."""
    try:
        items = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        items = []
    if not items or any(i <= 0 for i in items):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {value!r}")
    return list(dict.fromkeys(items))


def backends(value: str) -> list[str]:
    """A comma-separated subset of BACKENDS, duplicates dropped (order kept)."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in BACKENDS]
    if not items or bad:
        raise argparse.ArgumentTypeError(
            f"unknown backend {', '.join(bad) or repr(value)}; valid: {', '.join(BACKENDS)}")
    return list(dict.fromkeys(items))


def at_least(minimum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = minimum - 1
        if number < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value!r}")
        return number

    return parse


def arch_list(value: str) -> list[str]:
    keys = [k.strip() for k in value.split(",") if k.strip()]
    unknown = [k for k in keys if k not in ARCHS]
    if not keys or unknown:
        raise argparse.ArgumentTypeError(f"unknown architecture(s) {', '.join(unknown) or repr(value)}; "
                                         f"valid: {', '.join(ARCHS)}")
    return list(dict.fromkeys(keys))  # a key given twice runs once


def rounds(value: str) -> int | str:
    """A positive round count, or ``auto`` (kept as the string: None would read as "not given")."""
    if value == "auto":
        return value
    try:
        return at_least(1)(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or 'auto', got {value!r}") from None


def _positive(what: str) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not number > 0 or math.isinf(number):  # nan and inf too: a gate they switch off is no gate
            raise argparse.ArgumentTypeError(f"expected {what} > 0, got {value!r}")
        return number

    return parse


percent, seconds = _positive("a percentage"), _positive("a number of seconds")


def path_arg(value: str) -> str:
    """A path to write: ``~`` expanded here (so the path checked is the path written), an empty one refused."""
    if not value.strip():
        raise argparse.ArgumentTypeError("an empty path: name a file or folder")
    return os.path.expanduser(value)


def choice(*valid: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in valid:
            raise argparse.ArgumentTypeError(f"invalid choice {value!r}; valid: {', '.join(valid)}")
        return value

    return parse


# dest -> (option names, type, default, ini name or None, metavar, help). The first name is the current one.
OPTIONS: dict[str, tuple[tuple[str, ...], Callable[[str], Any] | None, Any, str | None, str | None, str]] = {
    "models": (("--ssm-models", "--models"), choice(*MODEL_SETS), "auto", "ssm_models", "SET",
               "model set: auto (tiny on CPU; tiny + pretrained-or-synthetic on GPU), tiny (embedded checkpoints), "
               "synthetic (real configs, random weights, GPU), pretrained (local cache or --ssm-model-path). "
               "Default: auto"),
    "archs": (("--ssm-archs", "--archs"), arch_list, None, "ssm_archs", "KEY,...",
              "architectures to run (ssmbench/archs): " + ", ".join(ARCHS) + ". Default: all"),
    "ssm_device": (("--ssm-device", "--device"), choice(*DEVICE_CHOICES), "auto", "ssm_device", "DEVICE",
                   "where models run: auto (cuda when available), cpu, cuda. Default: auto"),
    "kernel_configs": (("--ssm-kernel-configs",), choice(*KERNEL_CONFIGS), "auto", "ssm_kernel_configs", "MODE",
                       "mamba-ssm's Triton kernels: pinned (one configuration each, the smallest tile: no autotuning; "
                       "the first forward of a Mamba-2 model then compiles one kernel, not a dozen), autotuned (as "
                       "mamba-ssm ships them), auto (pinned on a GPU where the run times nothing, autotuned where it "
                       "times anything). Default: auto"),
    "ssm_dtype": (("--ssm-dtype", "--dtype"), choice(*DTYPE_CHOICES), "auto", "ssm_dtype", "DTYPE",
                  "parameter dtype; auto: checks float32 for tiny and synthetic models, bfloat16 for pretrained; "
                  "benchmarks bfloat16 for full-size models, float32 for tiny ones. Default: auto"),
    "contexts": (("--ssm-contexts", "--contexts"), int_list, None, "ssm_contexts", "N,...",
                 "context lengths of the sweep. Default: 512,1024,...,32768 on a GPU, 32,64,128 on a CPU"),
    "batch_sizes": (("--ssm-batch-sizes", "--batch-sizes"), int_list, None, "ssm_batch_sizes", "N,...",
                    "throughput batch sizes, ascending: a model and backend that run out of memory at one skip the "
                    "larger ones (recorded). Default: 1,2,4,...,256 (GPU: the Mamba paper's sweep), 1,4 (CPU)"),
    "throughput_prompts": (("--ssm-throughput-prompts",), int_list, None, "ssm_throughput_prompts", "N,...",
                           "prompt lengths of the throughput sweep. Default: 2048,8192,32768 on a GPU (the Mamba "
                           "paper's 2048, then long context at batch), the sweep's shortest context on a CPU"),
    "throughput_new_tokens": (("--ssm-throughput-new-tokens",), at_least(2), None, None, "N",
                              "tokens generated per throughput call. Default: 128 (GPU, the paper's), 8 (CPU)"),
    "decode_tokens": (("--ssm-decode-tokens", "--decode-tokens"), at_least(2), None, None, "N",
                      "new tokens per decode measurement. Default: 32 (GPU), 8 (CPU)"),
    "backends": (("--ssm-backends", "--backends"), backends, ["eager"], "ssm_backends", "NAME,...",
                 "decode backends: eager (transformers' default); compiled (the fastest decode transformers offers: "
                 "static cache + torch.compile; for Mamba where transformers offers none, as in 4.x, the suite's "
                 "CUDA graph); graphed (Mamba only: the suite's CUDA graph of the one-token step); native (Mamba only, "
                 "mamba-ssm installed: the authors' MambaLMHeadModel on the same weights, its CUDA-graph decode). "
                 "compiled, graphed and native need a GPU. Default: eager"),
    "bench_rounds": (("--bench-rounds",), rounds, 3, "ssm_bench_rounds", "N|auto",
                     "measured rounds per point, after warm-up calls (a second of them, 1 to 10). auto: 3 pilot "
                     "rounds estimate the spread, then as many rounds as put the 95 %% interval of the mean "
                     "within --bench-target, at most "
                     "--bench-max-time seconds a point. Default: 3"),
    "bench_target": (("--bench-target",), percent, 5.0, "ssm_bench_target", "PCT",
                     "spread target: with --bench-rounds auto, the 95 %% interval of the mean to reach; the summary "
                     "flags points whose rounds or steps spread wider. Default: 5"),
    "bench_max_time": (("--bench-max-time",), seconds, 60.0, None, "S",
                       "--bench-rounds auto: at most this many seconds of rounds per point. Default: 60"),
    "results_file": (("--ssm-results-file", "--results-file"), path_arg, ".benchmarks/ssmbench-points.json",
                     "ssm_results_file", "PATH", "every measured point, rewritten atomically after each one"),
    "scaling_report": (("--scaling-report",), path_arg, None, None, "DIR",
                       "write PNG plots and a markdown summary of the sweep to DIR"),
    "memory_compare_fail": (("--memory-compare-fail",), percent, 10.0, "ssm_memory_compare_fail", "PCT",
                            "with --benchmark-compare: fail when a point's peak memory grew by more than PCT %% over "
                            "the baseline (pytest-benchmark gates time only). Default: 10"),
    "decode_compare_fail": (("--decode-compare-fail",), percent, None, "ssm_decode_compare_fail", "PCT",
                            "with --benchmark-compare: fail when a decode point's time per token (its median step) "
                            "grew by more than PCT %% over the baseline; pytest-benchmark's gate times the whole call, "
                            "mostly the prefill at long contexts. Default: off (eager decode moves 10-70 %% between "
                            "sessions on a shared host: gate it wide, or gate the compiled and graphed points)"),
    "gate_report": (("--ssm-gate-report",), path_arg, None, None, "FILE",
                    "with -m gate and --benchmark-compare: write the gate's table (every point, each figure's change "
                    "and allowance) to FILE, markdown"),
    "calibrate_contexts": (("--ssm-calibrate-contexts", "--calibrate-contexts"), int_list, None, None, "N,...",
                           "contexts --ssm-calibrate re-measures. Default: the sweep's shortest and longest"),
    "calibrate_batches": (("--ssm-calibrate-batches",), int_list, None, None, "N,...",
                          "throughput batch sizes --ssm-calibrate re-measures (at every prompt): the whole call "
                          "against a plain call of the same batch and, on generate()'s paths (eager, compiled), the "
                          "call after its first token against plain generate()'s with a streamer. Default: the "
                          "sweep's smallest and middle batch size (1 and 16 of 1 ... 256)"),
    "calibrate_tolerance": (("--ssm-calibrate-tolerance", "--calibrate-tolerance"), percent, None,
                            "ssm_calibrate_tolerance", "PCT",
                            "largest difference --ssm-calibrate accepts. Default: 5 on a GPU, 100 on a CPU (tiny "
                            "models, milliseconds, a shared host)"),
    "calibrate_max_time": (("--ssm-calibrate-max-time",), seconds, 30.0, "ssm_calibrate_max_time", "S",
                           "--ssm-calibrate: keep alternating harness and plain calls for at most this many seconds "
                           "per point (at least 6 pairs whatever it takes) until the 95 %% interval decides. A long "
                           "point's pair costs two or three of its calls: on the H200, 6 pairs of phi-2's compiled "
                           "decode at 131072 took 160 s and left it undecided. Default: 30"),
}


def add_options(parser: pytest.Parser) -> None:
    """The suite's options, once (the entry point and, in a checkout where it is not installed, the plugin both
    call this)."""
    group = parser.getgroup("ssmbench", "Mamba vs Transformer conformance and benchmarks")
    if any("--ssm-models" in opt.names() for opt in group.options):
        return
    for dest, (names, kind, _, ini, metavar, text) in OPTIONS.items():
        aliases = f" (old name {', '.join(names[1:])}: kept for one release)" if len(names) > 1 else ""
        group.addoption(*names, dest=dest, type=kind, default=None, metavar=metavar, help=text + aliases)
        if ini:
            parser.addini(ini, help=f"{names[0]} for every run of this project", default=None)
    group.addoption("--ssm-model-path", "--model-path", action="append", default=[], dest="model_path",
                    metavar="KEY=DIR", help="local checkpoint directory for an architecture (mamba, phi); also "
                    "SSMBENCH_PATH_KEY (old name --model-path: kept for one release)")
    group.addoption("--ssm-calibrate", "--calibrate", action="store_true", dest="calibrate",
                    help="re-measure a sample of prefill, decode and throughput points the plain way (plain "
                         "generate(), a synchronize and a clock, the allocator's peak) right after each, and fail a "
                         "point whose time to first token, compiled/graphed time per token, throughput call (and its "
                         "decode after the first token) or extra peak memory differs by more "
                         "than --ssm-calibrate-tolerance (old name --calibrate: kept for one release)")


preset_key = pytest.StashKey[dict]()


def set_preset(config: pytest.Config, values: dict[str, Any]) -> None:
    """Values that replace the ini file's and the defaults for this run (the gate's points: ``gate.preset``)."""
    config.stash[preset_key] = dict(values)


def get(config: pytest.Config, dest: str) -> Any:
    """The option's value: command line, else a preset (``-m gate``), else ini, else default."""
    if dest not in OPTIONS:
        return config.getoption(dest)
    names, kind, default, ini, _, _ = OPTIONS[dest]
    value = config.getoption(dest, None)
    if value is not None:
        return value
    preset = config.stash.get(preset_key, {})
    if dest in preset:
        return preset[dest]
    raw = config.getini(ini) if ini else None
    if raw in (None, "", []):
        return default
    try:
        return kind(str(raw).strip()) if kind else str(raw).strip()
    except argparse.ArgumentTypeError as exc:
        raise pytest.UsageError(f"ini option {ini} = {raw!r}: {exc}") from None


def _writable(path: Path, kind: str) -> str | None:
    """Why ``path`` (a file or a folder to write) cannot be written, or None. Creates nothing: the nearest
    existing ancestor must be a writable folder."""
    if path.exists():
        if (kind == "file") == path.is_dir():
            return f"{path} is a {'folder' if path.is_dir() else 'file'}, not a {kind}"
        target = path if kind == "folder" else path.parent
        return None if os.access(target, os.W_OK) else f"{target} is not writable"
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is a file: {path} cannot be created"
    return None if os.access(parent, os.W_OK) else f"{parent} is not writable: {path} cannot be created"


def check_values(config: pytest.Config) -> None:
    """Every option's value read once at configure: a bad ini value is one usage error before anything runs, not
    a traceback per test module at collection (or, for one read only at the end, after the whole sweep)."""
    for dest in OPTIONS:
        get(config, dest)


def check_outputs(config: pytest.Config) -> None:
    """Output paths checked before anything is measured: a results file or report folder that cannot be
    written, or must not be (a device node, a FIFO, a link, a file that is not a points file, a folder of the
    user's), is a usage error now, not a failure -- or a loss -- after every point."""
    from ssmbench.results import check_results_path
    from ssmbench.safeio import check_report_folder

    for dest, kind in (("results_file", "file"), ("scaling_report", "folder"), ("gate_report", "file")):
        value = get(config, dest)
        if not value:
            continue
        path = Path(value).absolute()
        if dest == "gate_report":
            from .gate import report_refusal

            why = _writable(path, kind) or report_refusal(path, config)
        else:
            why = _writable(path, kind) or (check_results_path(path) if kind == "file" else
                                            check_report_folder(path, "scaling report"))
        if why:
            raise pytest.UsageError(f"{OPTIONS[dest][0][0]} {value}: {why}")
    if get(config, "scaling_report"):
        try:
            import matplotlib  # noqa: F401
        except ImportError as exc:
            raise pytest.UsageError(f"--scaling-report needs matplotlib, which does not import here ({exc}): "
                                    "pip install matplotlib, or leave the option out") from None
