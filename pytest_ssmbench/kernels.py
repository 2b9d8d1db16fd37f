"""mamba-ssm's Triton kernels pinned to one configuration each for a run that times nothing
(``ssmbench.kernel_configs``, ``--ssm-kernel-configs``): decided once the run's tests are selected, applied in
the process that runs them, undone at the session's end."""

from __future__ import annotations

import pytest

from ssmbench import kernel_configs

from . import options
from .settings import settings

pinned_key = pytest.StashKey[kernel_configs.Pinned]()

TIMED_MARKS = ("benchmark", "gate")


def decide(mode: str, gpu: bool, items: list[pytest.Item]) -> str:
    """``pinned`` or ``autotuned`` for this run: auto pins on a GPU where no selected test is timed."""
    if mode != "auto":
        return mode
    timed = any(item.get_closest_marker(mark) for item in items for mark in TIMED_MARKS)
    return "pinned" if gpu and not timed else "autotuned"


def collection_finish(session: pytest.Session) -> None:
    config = session.config
    gpu = settings(config).device.type == "cuda"
    decision = decide(options.get(config, "kernel_configs"), gpu, session.items)
    runs_tests_here = not config.pluginmanager.hasplugin("dsession")  # an xdist controller runs none
    if decision == "pinned" and gpu and runs_tests_here and session.items and not config.option.collectonly:
        config.stash[pinned_key] = kernel_configs.pin()


def sessionfinish(session: pytest.Session) -> None:
    config = session.config
    pinned = config.stash.get(pinned_key, None)
    if pinned is not None:
        pinned.restore()
        if hasattr(config, "workeroutput"):  # an xdist worker: its controller says it
            config.workeroutput["ssmbench_pinned"] = pinned.count


workers_key = pytest.StashKey[list]()


def node_down(node) -> None:
    """Controller side: what a worker pinned."""
    pinned = getattr(node, "workeroutput", {}).get("ssmbench_pinned")
    if pinned is not None:
        node.config.stash.setdefault(workers_key, []).append(pinned)


def summary_line(config: pytest.Config) -> str | None:
    """What the run's Triton kernels were, where it pinned them (here, or in the xdist workers)."""
    pinned = config.stash.get(pinned_key, None)
    counts = [pinned.count] if pinned is not None else config.stash.get(workers_key, [])
    if not any(counts):  # nothing pinned: mamba-ssm not installed, or nothing recognised (the header's probe, which
        return None      # pins the same package, has said that once already)
    where = "" if pinned is not None else f" in each of {len(counts)} workers"
    kernels = "/".join(map(str, sorted(set(counts))))
    return (f"mamba-ssm's Triton kernels ran with one configuration each, the smallest tile ({kernels} autotuned "
            f"kernels{where}; nothing was timed): --ssm-kernel-configs autotuned checks the tuned ones")
