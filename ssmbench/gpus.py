"""Which GPUs a run may use, and pinning one pytest-xdist worker to each, before CUDA initialises. Counting
goes through NVML, not torch.cuda, so that nothing initialises CUDA with the wrong mask."""

from __future__ import annotations

import os
import re
from typing import MutableMapping


class PinningError(ValueError):
    pass


def physical_gpu_count() -> int:
    try:
        import pynvml

        pynvml.nvmlInit()
        return int(pynvml.nvmlDeviceGetCount())
    except Exception:  # no driver, no NVML: no GPU for this purpose
        return 0


def visible_gpus(environ: MutableMapping[str, str], physical_count: int) -> list[str]:
    """The GPUs this process may use: the caller's CUDA_VISIBLE_DEVICES if set (ids or UUIDs, in order),
    else every physical GPU; none on a machine without GPUs, whatever the mask says. A mask that names no GPU
    the way CUDA reads them (indices, GPU-/MIG- UUIDs) is an error saying so."""
    mask = environ.get("CUDA_VISIBLE_DEVICES")
    if mask is None or physical_count == 0:
        return [str(i) for i in range(physical_count)]
    entries = [m.strip() for m in mask.split(",") if m.strip()]
    # CUDA stops at the first invalid entry (and -1 hides every GPU after it)
    bad = [m for m in entries if not re.fullmatch(r"-?\d+|(GPU|MIG)-[0-9A-Za-z-]+(/\d+/\d+)?", m)]
    if bad:
        raise PinningError(f"CUDA_VISIBLE_DEVICES={mask!r}: {', '.join(map(repr, bad))} is not a GPU index or "
                           "GPU-/MIG- UUID; unset it or list the GPUs to use, e.g. CUDA_VISIBLE_DEVICES=0,1")
    return [m for m in entries if m != "-1"]


def worker_index(worker_id: str) -> int:
    match = re.fullmatch(r"gw(\d+)", worker_id)
    if not match:
        raise PinningError(f"not an xdist worker id: {worker_id!r}")
    return int(match.group(1))


def check_worker_count(workers: int, gpus: list[str]) -> None:
    """More workers than GPUs would put two workers (and two models) on one GPU: refuse."""
    if gpus and workers > len(gpus):
        raise PinningError(
            f"-n {workers} asks for more workers than the {len(gpus)} visible GPU(s) ({', '.join(gpus)}); "
            f"use -n {len(gpus)} or -n auto (one worker per GPU)"
        )


def worker_gpus(device: str) -> list[str]:
    """The GPUs pytest-xdist workers share out, one each: the visible ones; none for ``--device cpu``, whose
    workers use no GPU (so -n is then not bounded by the GPU count, and nothing is pinned)."""
    return [] if device == "cpu" else visible_gpus(os.environ, physical_gpu_count())


def pin_worker(worker_id: str, environ: MutableMapping[str, str], gpus: list[str],
               slot: int | None = None) -> str | None:
    """Restrict this worker to its own GPU of ``gpus`` by rewriting CUDA_VISIBLE_DEVICES; None without GPUs.
    ``slot`` is the worker's index among the workers of its own host (``host_slots``); without it, the
    worker's xdist index (every worker on this machine)."""
    if not gpus:
        return None
    index = worker_index(worker_id) if slot is None else slot
    if index + 1 > len(gpus):
        host = "this host" if slot is not None else "this machine"
        raise PinningError(f"{worker_id} is worker {index + 1} on {host}, which has {len(gpus)} visible GPU(s) "
                           f"({', '.join(gpus)}): give {host} at most {len(gpus)} worker(s)")
    environ["CUDA_VISIBLE_DEVICES"] = gpus[index]
    return gpus[index]


def pin_this_process(worker: str | None, device: str, slot: int | None = None) -> str | None:
    """Called first thing in an xdist worker (``worker`` is its id, from xdist's ``config.workerinput``, not
    from the environment: a pytest started inside a worker inherits PYTEST_XDIST_WORKER but is no worker);
    no-op in the controller, without xdist, or with ``--device cpu``."""
    return pin_worker(worker, os.environ, worker_gpus(device), slot) if worker else None


_SSH_OPTIONS_WITH_ARGUMENT = set("BbcDEeFIiJLlmOopQRSWw")  # ssh(1): these flags take the next word


def host_of(spec) -> str:
    """The host an execnet gateway spec runs on: the destination in ``ssh=[options] [user@]HOST`` (options and
    their arguments skipped, the user dropped: ``-p 2222 me@gpu-a`` and ``gpu-a -p 2222`` are both gpu-a);
    popen (``-n``) and anything else run here."""
    ssh = getattr(spec, "ssh", None)
    if ssh:
        words, i = ssh.split(), 0
        while i < len(words):
            word = words[i]
            if word.startswith("-") and len(word) > 1:
                i += 2 if len(word) == 2 and word[1] in _SSH_OPTIONS_WITH_ARGUMENT else 1
                continue
            return word.rpartition("@")[2]
        return ssh
    socket = getattr(spec, "socket", None)
    return f"socket {socket}" if socket else "localhost"


def host_slots(hosts: list[str]) -> list[int]:
    """Each worker's index among the workers on its own host, in order: ``--tx 2*ssh=a --tx 2*ssh=b`` gives
    gw0..gw3 the slots 0, 1, 0, 1 (each host's workers take that host's GPUs 0 and 1)."""
    seen: dict[str, int] = {}
    slots = []
    for host in hosts:
        slots.append(seen.get(host, 0))
        seen[host] = slots[-1] + 1
    return slots


def group_name(model: str, heavy_test: str | None = None) -> str:
    """A test's xdist_group: its model's name, or ``model/test_function`` for a heavy check of a full-size
    model (a unit of its own, see pytest_ssmbench/xdist.py)."""
    return f"{model}/{heavy_test}" if heavy_test else model
