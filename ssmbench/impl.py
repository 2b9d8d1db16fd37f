"""Which implementation an SSM's mixers run: the CUDA kernels of mamba-ssm / causal-conv1d, or transformers'
reference PyTorch code. Read from behaviour, not from transformers' internals: a tiny model of the architecture
(its tiny configuration, random weights) generates two tokens on the run's device while a profile hook records
which functions of the kernel packages it calls (``probe``). That holds whatever shape transformers gives its
kernel dispatch (4.x's fast-path flag, 4.56-5.14's module-level functions, 5.17's wrappers, 5.25's ``kernels``
modules); an outcome the probe cannot read is ``unknown``, said once in the header, never a crash. Forcing the
reference path (``ssmbench.forcing``) is checked by the same probe (``reference_verified``).
"""

from __future__ import annotations

import contextlib
import functools
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from .archs import ARCHS, Arch
from .forcing import ReferenceUnavailable, _hook_reference, _torch_function, reference_path  # noqa: F401

REFERENCE = "torch-reference"
UNKNOWN = "unknown"
# The packages whose functions carry an SSM's fused operations.
KERNEL_PACKAGES = ("mamba_ssm", "causal_conv1d")
# Per operation, the public functions of those packages that carry it, as transformers' mixers call them (the
# fused inner functions carry both the convolution and the scan).
KERNEL_FUNCTIONS = {
    "selective_scan": ("selective_scan_fn", "mamba_inner_fn", "mamba_chunk_scan_combined",
                       "mamba_split_conv1d_scan_combined"),
    "selective_state_update": ("selective_state_update",),
    "causal_conv1d": ("causal_conv1d_fn", "mamba_inner_fn", "mamba_split_conv1d_scan_combined"),
    "causal_conv1d_update": ("causal_conv1d_update",),
}
OPS = tuple(KERNEL_FUNCTIONS)
_KNOWN = {name for names in KERNEL_FUNCTIONS.values() for name in names}

FORCED_SUMMARY = f"{REFERENCE} (forced: this transformers calls the installed CUDA kernels for CPU tensors too)"
NOT_FORCED = "installed CUDA kernels, called for CPU tensors (not forced to the reference path: will fail)"


class _Recorder:
    """A profile hook: every call into a kernel package from outside it, as (package, function)."""

    def __init__(self, packages: tuple[str, ...] = KERNEL_PACKAGES):
        self.packages = packages
        self.calls: list[tuple[str, str]] = []
        self._chained = None

    def __call__(self, frame, event, arg):
        if event == "call":
            top = str(frame.f_globals.get("__name__", "")).partition(".")[0]
            if top in self.packages:
                back = frame.f_back
                caller = str(back.f_globals.get("__name__", "")).partition(".")[0] if back is not None else ""
                if caller != top:
                    self.calls.append((top, frame.f_code.co_name))
        if self._chained is not None:
            self._chained(frame, event, arg)

    def __enter__(self):
        self._chained = sys.getprofile()
        sys.setprofile(self)
        return self

    def __exit__(self, *exc):
        sys.setprofile(self._chained)
        return False


def record_kernel_calls() -> _Recorder:
    """Context manager: ``.calls`` lists each call into a kernel package made inside it (this thread)."""
    return _Recorder()


@dataclass(frozen=True)
class Probe:
    """What one tiny forward of an architecture called, per operation: a package, REFERENCE or UNKNOWN."""

    ops: dict[str, str]
    error: str | None = None  # the generation raised (e.g. a CUDA kernel handed CPU tensors)
    unrecognised: tuple[str, ...] = ()  # kernel-package functions called that no operation names
    calls: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def called_kernels(self) -> bool:
        return bool(self.calls)

    @property
    def unknown(self) -> str | None:
        """Why the implementation cannot be told (None: it can)."""
        if self.error and not self.calls:
            return f"the probe's generation failed: {self.error}"
        if self.unrecognised:
            return "kernel functions the suite does not know were called: " + ", ".join(self.unrecognised)
        if UNKNOWN in self.ops.values():
            return f"the probe's generation failed: {self.error}" if self.error else "no reading"
        return None


def ops_from_calls(calls: list[tuple[str, str]], completed: bool, error: str | None = None) -> Probe:
    """Per operation, the package whose function for it was called; where none was, the reference path if the
    generation completed (nothing else computed it), else unknown."""
    called: dict[str, str] = {}
    for package, function in calls:
        called.setdefault(function, package)
    unrecognised = tuple(sorted({f"{p}.{f}" for p, f in calls if f not in _KNOWN}))
    fallback = REFERENCE if completed and not unrecognised else UNKNOWN
    ops = {op: next((called[n] for n in names if n in called), fallback) for op, names in KERNEL_FUNCTIONS.items()}
    return Probe(ops, error, unrecognised, tuple(calls))


def _tiny_model(arch: Arch, device: torch.device, dtype: torch.dtype):
    from transformers import AutoConfig, AutoModelForCausalLM

    from .compat import dtype_kwargs

    config = AutoConfig.for_model(arch.model_type, vocab_size=64, bos_token_id=1, eos_token_id=1, pad_token_id=0,
                                  **arch.tiny_config)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, **dtype_kwargs(dtype))
    return model.to(device).eval()


def _run_probe(arch: Arch, device: torch.device, dtype: torch.dtype, forced: bool, around=None) -> Probe:
    """``around``: a context manager factory the generation runs inside (built after the model)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the fallback's own warning: the header says it
    try:
        try:
            model = _tiny_model(arch, device, dtype)
            if forced:
                _hook_reference(model, arch.kernels)
        except Exception as exc:  # noqa: BLE001 -- any failure is a reading: unknown, with why
            return Probe(dict.fromkeys(OPS, UNKNOWN), f"building a tiny {arch.model_type}: {_one_line(exc)}")
        ids = torch.arange(2, 8, device=device).unsqueeze(0)
        recorder = _Recorder()
        error = None
        try:
            with (around or contextlib.nullcontext)(), recorder, torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=2,
                               min_new_tokens=2, do_sample=False, pad_token_id=0)
        except Exception as exc:  # noqa: BLE001
            error = _one_line(exc)
        return ops_from_calls(recorder.calls, completed=error is None, error=error)
    finally:
        hf_logging.set_verbosity(verbosity)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


@functools.lru_cache(maxsize=None)
def _cached_probe(key: str, device: str, dtype: torch.dtype, forced: bool) -> Probe:
    return _run_probe(ARCHS[key], torch.device(device), dtype, forced)


def probe(arch: Arch, device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
          forced: bool = False) -> Probe:
    """What a tiny ``arch`` generating on ``device`` calls (cached per architecture, device and dtype).
    ``forced``: with the suite's reference-path hooks on its mixers, as the loader applies them off CUDA."""
    device = torch.device(device)
    if dtype is None:
        dtype = torch.float32
    if arch.key not in ARCHS or ARCHS[arch.key] is not arch:  # an architecture outside the registry: no cache
        return _run_probe(arch, device, dtype, forced)
    return _cached_probe(arch.key, str(device), dtype, forced)


def summarize(ops: dict[str, str]) -> str:
    """One word for the header and tables: cuda-kernels, torch-reference, unknown, or mixed with details."""
    values = set(ops.values())
    if values == {REFERENCE}:
        return REFERENCE
    if UNKNOWN in values:
        return UNKNOWN
    if REFERENCE not in values:
        return "cuda-kernels"
    return "mixed (" + ", ".join(f"{k}={v}" for k, v in ops.items()) + ")"


def calls_kernels_off_cuda(arch: Arch) -> bool:
    """Whether this transformers calls the installed kernel packages for an ``arch`` model on the CPU (seen on
    5.17 ... 5.24: the wrappers called the package for tensors on any device, which dies in a CUDA kernel; 4.x and
    5.25 send CPU tensors to the PyTorch code themselves)."""
    return arch.kernels is not None and probe(arch, "cpu").called_kernels


def implementation(arch: Arch, device: torch.device | str, dtype: torch.dtype | None = None) -> str:
    """What an ``arch`` model built by the suite's loader runs on ``device``."""
    device = torch.device(device)
    if device.type != "cuda" and calls_kernels_off_cuda(arch):
        forced = probe(arch, device, dtype, forced=True)
        return FORCED_SUMMARY if not forced.called_kernels and not forced.unknown else UNKNOWN
    return summarize(probe(arch, device, dtype).ops)


def unknown_reason(arch: Arch, device: torch.device | str, dtype: torch.dtype | None = None) -> str | None:
    """Why ``implementation`` says unknown (None where it does not)."""
    device = torch.device(device)
    if device.type != "cuda" and calls_kernels_off_cuda(arch):
        forced = probe(arch, device, dtype, forced=True)
        if forced.called_kernels:
            return "forcing the reference path off CUDA did not take: kernels still called " + ", ".join(
                sorted({f"{p}.{f}" for p, f in forced.calls}))
        return forced.unknown
    return probe(arch, device, dtype).unknown


def scan_on_reference(arch: Arch, device: torch.device | str = "cuda", dtype: torch.dtype | None = None) -> bool:
    """The slow case worth a warning: the sequence scan itself runs the per-token PyTorch loop."""
    return probe(arch, device, dtype).ops.get("selective_scan") == REFERENCE


def kernels_available(arch: Arch, device: torch.device | str, dtype: torch.dtype | None = None) -> bool:
    device = torch.device(device)
    return device.type == "cuda" and probe(arch, device, dtype).ops.get("selective_scan") not in (REFERENCE, UNKNOWN)


def model_implementation(model: Any, arch: Arch) -> str:
    """What a loaded SSM runs: the reference path where the suite forced it, else what its architecture's probe
    saw on the model's device. (Not ``model.use_kernels``: 5.25 sets it on every from_pretrained model, whatever
    then runs.)"""
    if getattr(model, "_ssmbench_reference_off_cuda", False):
        return FORCED_SUMMARY
    if model.device.type != "cuda" and calls_kernels_off_cuda(arch):
        return NOT_FORCED
    return summarize(probe(arch, model.device, model.dtype).ops)


def force_reference_off_cuda(model: Any, arch: Arch) -> bool:
    """For a model off CUDA whose transformers would call CUDA kernels for it: each mixer's forward runs inside
    ``reference_path`` (hooks; the module is restored after every call, raising or not). True if hooked."""
    if model.device.type == "cuda" or not calls_kernels_off_cuda(arch):
        return False
    _hook_reference(model, arch.kernels)
    model._ssmbench_reference_off_cuda = True
    return True


@functools.lru_cache(maxsize=None)
def _verified(key: str, device: str) -> str | None:
    arch = ARCHS[key]
    try:
        seen = _run_probe(arch, torch.device(device), torch.float32, forced=False,
                          around=lambda: reference_path(arch.kernels))
    except ReferenceUnavailable as exc:
        return str(exc)
    if seen.called_kernels:
        return ("inside the suite's reference path the mixer still called " +
                ", ".join(sorted({f"{p}.{f}" for p, f in seen.calls})))
    return seen.unknown


def reference_verified(arch: Arch, device: torch.device | str) -> str | None:
    """None when ``reference_path`` really takes the kernels out of an ``arch`` forward on ``device`` (seen by
    the probe), else why not."""
    return _verified(arch.key, str(torch.device(device)))


def header_lines(archs: list[Arch], device: torch.device, dtype: torch.dtype | None = None) -> tuple[list[str],
                                                                                                        list[str]]:
    """The header's implementation line per SSM architecture of the run, and one warning per architecture whose
    implementation is unknown."""
    lines, warns = [], []
    for arch in archs:
        if arch.kernels is None or arch.unsupported():
            continue
        try:
            said = implementation(arch, device, dtype)
            why = unknown_reason(arch, device, dtype) if said == UNKNOWN else None
        except Exception as exc:  # noqa: BLE001 -- the header never stops a run
            said, why = UNKNOWN, _one_line(exc)
        lines.append(f"ssmbench: {arch.key} implementation {said}")
        if why:
            warns.append(f"ssmbench: WARNING: cannot tell which implementation {arch.key} runs on this transformers "
                         f"({why}); its figures are labelled {UNKNOWN}")
    return lines, warns


def run_implementation(archs: list[Arch], device: torch.device, dtype: torch.dtype | None = None) -> str:
    """One word for a run's results metadata: the implementation of the run's SSMs (Mamba's, the reference
    pair's, where it is in the run), '-' where the run has none."""
    ssms = [a for a in archs if a.kernels is not None and not a.unsupported()]
    ssms.sort(key=lambda a: a.key != "mamba")
    if not ssms:
        return "-"
    with contextlib.suppress(Exception):
        return implementation(ssms[0], device, dtype)
    return UNKNOWN
