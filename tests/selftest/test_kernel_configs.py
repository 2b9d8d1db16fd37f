"""mamba-ssm's Triton kernels pinned to one configuration each (ssmbench.kernel_configs, --ssm-kernel-configs): on a
package laid out as mamba-ssm's (autotuners, some under triton.heuristics, a module that fails to import), and
with Triton's own decorator where Triton is installed."""

from __future__ import annotations

import sys
import textwrap
import warnings
from types import SimpleNamespace

import pytest

from pytest_ssmbench.kernels import decide, node_down, pinned_key, summary_line
from ssmbench import kernel_configs

pytestmark = [pytest.mark.quick, pytest.mark.selftest]

FAKE = '''
class Config:
    def __init__(self, kwargs, num_stages=3):
        self.kwargs, self.num_stages = kwargs, num_stages

class Autotuner:
    def __init__(self, configs, fn=None):
        self.configs, self.fn, self.cache = configs, fn, {}

class Heuristics:
    def __init__(self, fn):
        self.fn = fn

big = Config({"BLOCK_SIZE_M": 128, "BLOCK_SIZE_N": 256}, num_stages=3)
small = Config({"BLOCK_SIZE_M": 64, "BLOCK_SIZE_N": 32}, num_stages=4)      # 8192
smaller = Config({"BLOCK_SIZE_M": 32, "BLOCK_SIZE_N": 64}, num_stages=2)    # 4096: the smallest tile
scan = Autotuner([big, small, smaller])
state_update = Heuristics(Autotuner([small, big]))                         # heuristics(autotune(jit))
lone = Autotuner([big])                                                    # one configuration: left alone
'''


@pytest.fixture
def package(tmp_path, monkeypatch):
    """fakessm.ops.triton: a scan module, a norm module, and a module that raises on import."""
    root = tmp_path / "fakessm" / "ops" / "triton"
    root.mkdir(parents=True)
    for folder in (tmp_path / "fakessm", tmp_path / "fakessm" / "ops", root):
        (folder / "__init__.py").write_text("")
    (root / "ssd.py").write_text(textwrap.dedent(FAKE))
    (root / "norm.py").write_text("from .ssd import Autotuner, big, small\nnorm = Autotuner([big, small])\n")
    (root / "broken.py").write_text("raise ImportError('needs a GPU build')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "fakessm.ops.triton"
    for name in [n for n in sys.modules if n.startswith("fakessm")]:
        del sys.modules[name]


def test_every_autotuner_is_found_heuristics_unwrapped(package):
    names = [name for name, _ in kernel_configs.autotuners(package)]
    assert names == ["fakessm.ops.triton.norm.norm", "fakessm.ops.triton.ssd.lone", "fakessm.ops.triton.ssd.scan",
                     "fakessm.ops.triton.ssd.state_update"], names


def test_pin_gives_each_its_smallest_tile_and_restore_gives_it_back(package):
    import fakessm.ops.triton.norm as norm
    import fakessm.ops.triton.ssd as ssd

    before = {id(t): t.configs for t in (ssd.scan, ssd.state_update.fn, ssd.lone, norm.norm)}
    pinned = kernel_configs.pin(package)
    assert pinned.count == 3  # lone has one configuration already
    assert ssd.scan.configs == [ssd.smaller]
    assert ssd.state_update.fn.configs == [ssd.small]
    assert norm.norm.configs == [ssd.small]
    assert ssd.lone.configs is before[id(ssd.lone)]
    pinned.restore()
    for tuner in (ssd.scan, ssd.state_update.fn, ssd.lone, norm.norm):
        assert tuner.configs is before[id(tuner)]
    assert pinned.count == 3  # what was pinned, for the run's summary after the restore
    with kernel_configs.pin(package):
        assert ssd.scan.configs == [ssd.smaller]
    assert ssd.scan.configs is before[id(ssd.scan)]


@pytest.mark.parametrize("body, sub", [
    ("scan = object()\n", None),
    ("raise RuntimeError('a new Triton broke this import')\n", None),
    ("", "raise RuntimeError('a subpackage a new Triton broke')\n"),   # walk_packages imports subpackages itself
])
def test_nothing_recognised_says_so_and_changes_nothing(tmp_path, monkeypatch, body, sub):
    """No autotuner found, or the package or a subpackage raising on import (any error, not only ImportError):
    nothing pinned, a note for the header, no warning (under -W error a warning would stop the run) and no
    exception."""
    (tmp_path / "plainssm").mkdir()
    (tmp_path / "plainssm" / "__init__.py").write_text(body)
    if sub is not None:
        (tmp_path / "plainssm" / "sub").mkdir()
        (tmp_path / "plainssm" / "sub" / "__init__.py").write_text(sub)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            pinned = kernel_configs.pin("plainssm")
        assert pinned.count == 0 and "autotune as usual" in pinned.note
    finally:
        for name in [n for n in sys.modules if n.startswith("plainssm")]:
            del sys.modules[name]


def test_absent_package_is_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pinned = kernel_configs.pin("no_such_ssm_package.ops")
    assert pinned.count == 0 and pinned.note is None


def test_summary_line_here_and_from_xdist_workers():
    config = SimpleNamespace(stash=pytest.Stash())
    assert summary_line(config) is None  # nothing pinned (a CPU, --collect-only, a timed run)
    config.stash[pinned_key] = kernel_configs.Pinned()
    assert summary_line(config) is None  # mamba-ssm not installed: nothing to pin
    config.stash[pinned_key] = kernel_configs.Pinned(count=43)
    assert "(43 autotuned kernels; nothing was timed)" in summary_line(config)
    workers = SimpleNamespace(stash=pytest.Stash())
    for _ in range(2):
        node_down(SimpleNamespace(config=workers, workeroutput={"ssmbench_pinned": 43}))
    assert "(43 autotuned kernels in each of 2 workers;" in summary_line(workers)
    noted = SimpleNamespace(stash=pytest.Stash())
    noted.stash[pinned_key] = kernel_configs.Pinned(note="no Triton autotuner recognised")
    assert summary_line(noted) is None  # the header said it (its probe pins the same package): said once


@pytest.mark.parametrize("mode, gpu, marks, expected", [
    ("auto", True, [()], "pinned"),
    ("auto", True, [(), ("benchmark",)], "autotuned"),   # anything timed: the tuned kernels
    ("auto", True, [("gate",)], "autotuned"),
    ("auto", False, [()], "autotuned"),                   # nothing to pin on a CPU
    ("pinned", True, [("benchmark",)], "pinned"),
    ("autotuned", True, [()], "autotuned"),
])
def test_decide(mode, gpu, marks, expected):
    items = [SimpleNamespace(get_closest_marker=lambda m, ms=ms: m if m in ms else None) for ms in marks]
    assert decide(mode, gpu, items) == expected


def test_real_triton_autotuner(tmp_path, monkeypatch):
    triton = pytest.importorskip("triton", reason="Triton is not installed here (CPU torch): the fake package "
                                 "above stands in for its Autotuner")
    root = tmp_path / "tritonssm"
    root.mkdir()
    (root / "__init__.py").write_text(textwrap.dedent('''
        import triton
        import triton.language as tl

        @triton.autotune(configs=[triton.Config({"BLOCK_SIZE_M": 128}, num_stages=3),
                                  triton.Config({"BLOCK_SIZE_M": 32}, num_stages=3)], key=["n"])
        @triton.heuristics({"EVEN": lambda args: args["n"] % 2 == 0})
        @triton.jit
        def kernel(x_ptr, n, BLOCK_SIZE_M: tl.constexpr, EVEN: tl.constexpr):
            pass
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import tritonssm

        assert isinstance(tritonssm.kernel, triton.runtime.autotuner.Autotuner)
        pinned = kernel_configs.pin("tritonssm")
        assert pinned.count == 1 and [c.kwargs for c in tritonssm.kernel.configs] == [{"BLOCK_SIZE_M": 32}]
        pinned.restore()
        assert len(tritonssm.kernel.configs) == 2
    finally:
        sys.modules.pop("tritonssm", None)
