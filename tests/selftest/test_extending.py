"""The suite's extension points hold what the README promises: a decode backend is one module in
ssmbench/backends, and nothing else changes. Shown in a copy of the checkout (the module added there, never
here): the option accepts it, the sweep runs it through the harness, its points are recorded, and the copy differs
from this checkout by that one file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.selftest.child import ROOT, clean_env

pytestmark = pytest.mark.selftest

NOCACHE = '''"""``nocache``: generate() with the cache off, every step recomputing the whole sequence (a
throwaway backend of a self-test: one module is all a backend needs)."""

from .eager import Eager


class NoCache(Eager):
    name = "nocache"
    generate_kwargs = {"use_cache": False}

    def decode_path(self, lm) -> str:
        return "transformers generate(), no cache"


BACKEND = NoCache()
'''


def _copy_checkout(target):
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def test_a_backend_is_one_module(tmp_path):
    copy = tmp_path / "checkout"
    _copy_checkout(copy)
    (copy / "ssmbench" / "backends" / "nocache.py").write_text(NOCACHE)
    points = tmp_path / "points.json"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", "benchmark", "--ssm-models", "tiny",
         "--ssm-archs", "phi", "--ssm-backends", "eager,nocache", "--ssm-contexts", "8", "--benchmark-disable",
         "-k", "test_latency_decode", f"--ssm-results-file={points}", "tests/benchmarks/test_latency.py"],
        cwd=copy, env=clean_env(), capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    recorded = {(p["backend"], p["decode_path"]) for p in json.loads(points.read_text())["points"]}
    assert recorded == {("eager", "transformers generate(), eager"), ("nocache", "transformers generate(), no cache")}
    changed = sorted(str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                     and not (ROOT / p.relative_to(copy)).is_file())
    assert changed == ["ssmbench/backends/nocache.py"], changed


LLAMA_COPY = '''"""A throwaway architecture of a self-test: Llama's tiny configuration under another key."""

from .base import Arch, Layer, attention_cache_bytes
from .llama import ARCH as LLAMA
from .qwen2 import attention

ARCH = Arch(
    key="llama_copy", family="attention", model_type="llama", hub_id="example/llama-copy",
    synthetic_config=dict(LLAMA.synthetic_config), published_params=LLAMA.published_params,
    published_digits=LLAMA.published_digits, tiny_config=dict(LLAMA.tiny_config), tiny_pad_token=False,
    cache_bytes=attention_cache_bytes, layers={"attention": Layer(attention, "float64 grouped-query attention")},
)
'''


def test_an_architecture_is_one_module_and_its_tiny_checkpoint(tmp_path):
    """The guide's recipe (docs/adding.md) is true: a module in ssmbench/archs and a tiny checkpoint in
    fixtures/tiny/<key> -- here Llama's committed one copied, as ssmbench make-tiny would write it -- and the quick
    tier runs every check on the new architecture, with nothing else in the checkout touched."""
    copy = tmp_path / "checkout"
    _copy_checkout(copy)
    (copy / "ssmbench" / "archs" / "llama_copy.py").write_text(LLAMA_COPY)
    shutil.copytree(copy / "fixtures" / "tiny" / "llama", copy / "fixtures" / "tiny" / "llama_copy")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", "quick and conformance",
         "--ssm-models", "tiny", "--ssm-archs", "llama_copy", "-rs"],
        cwd=copy, env=clean_env(), capture_output=True, text=True, timeout=600, check=False)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert "[tiny-llama_copy" in out or "passed" in out, out[-2000:]
    passed = int(out.rsplit(" passed", 1)[0].split()[-1])
    assert passed >= 30, out[-2000:]  # every conformance check that runs on an attention model, on the new one
    changed = sorted(str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                     and not (ROOT / p.relative_to(copy)).is_file())
    assert changed == sorted(["ssmbench/archs/llama_copy.py", *(
        f"fixtures/tiny/llama_copy/{f.name}" for f in (ROOT / "fixtures" / "tiny" / "llama").iterdir())]), changed
