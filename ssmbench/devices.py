"""Device profiles (peak bandwidth and bf16 peak, from vendor datasheets; ../shared/FACTS.md) and the
roofline arithmetic: the floor a measured time can never beat, MBU for decode, MFU for prefill."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class DeviceProfile:
    key: str  # folder name under baselines/
    name: str
    match: tuple[str, ...]  # substrings of torch.cuda.get_device_name() (lowercase)
    memory_gb: float | None
    bandwidth_gbs: float | None  # peak DRAM bandwidth, GB/s
    bf16_tflops: float | None  # dense bf16 peak, TFLOP/s
    integrated: bool = False  # unified CPU/GPU memory
    note: str = ""

    @property
    def known(self) -> bool:
        return self.bandwidth_gbs is not None


PROFILES: tuple[DeviceProfile, ...] = (
    DeviceProfile("dgx-spark", "DGX Spark (GB10)", ("gb10",), 128, 273, 62, integrated=True,
                  note="bf16 peak not published; 62 TFLOP/s is a third-party figure"),
    DeviceProfile("h200", "NVIDIA H200 SXM", ("h200",), 141, 4800, 989),
    DeviceProfile("h100-sxm", "NVIDIA H100 SXM", ("h100 80gb hbm3", "h100 sxm"), 80, 3350, 989),
    DeviceProfile("h100-pcie", "NVIDIA H100 PCIe", ("h100 pcie",), 80, 2000, 756),
    DeviceProfile("a100-80gb", "NVIDIA A100 SXM 80GB", ("a100-sxm4-80gb", "a100 80gb", "a100-sxm-80gb"), 80, 2039, 312),
    DeviceProfile("l4", "NVIDIA L4", ("nvidia l4",), 24, 300, 121),
    DeviceProfile("rtx-4090", "NVIDIA GeForce RTX 4090", ("rtx 4090",), 24, 1008, 165,
                  note="bf16 peak with fp32 accumulate"),
)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "unknown"


def profile_for(device_name: str) -> DeviceProfile:
    """The profile of a torch device name; an unknown GPU gets a profile with unknown limits."""
    lowered = device_name.lower()
    for profile in PROFILES:
        if any(m in lowered for m in profile.match):
            return profile
    return DeviceProfile(_slug(device_name), device_name, (), None, None, None, note="not in the profile table")


def by_key(key: str) -> DeviceProfile:
    for profile in PROFILES:
        if profile.key == key:
            return profile
    raise KeyError(f"unknown device profile {key!r}; valid: {', '.join(p.key for p in PROFILES)}")


def decode_read_bytes(point) -> int:
    """Bytes a decode step reads for a measured point (an ``ssmbench.point.Point``): the weights and the
    cache (as measured, else the formula's figure)."""
    m = point.memory
    return point.weight_bytes + (m.cache_bytes if m.cache_bytes is not None else m.cache_bytes_formula)


def decode_floor_s(weight_bytes: int, cache_bytes: int, profile: DeviceProfile) -> float | None:
    """Batch-1 decode reads every weight and the cache once per token: the fastest possible token."""
    if not profile.known:
        return None
    return (weight_bytes + cache_bytes) / (profile.bandwidth_gbs * 1e9)


def mbu(weight_bytes: int, cache_bytes: int, seconds_per_token: float, profile: DeviceProfile) -> float | None:
    floor = decode_floor_s(weight_bytes, cache_bytes, profile)
    return None if floor is None else floor / seconds_per_token


def prefill_floor_s(params: int, tokens: int, profile: DeviceProfile) -> float | None:
    """Prefill is compute-bound: 2 x params x tokens FLOPs at the bf16 peak."""
    if profile.bf16_tflops is None:
        return None
    return 2 * params * tokens / (profile.bf16_tflops * 1e12)


def mfu(params: int, tokens: int, seconds: float, profile: DeviceProfile) -> float | None:
    floor = prefill_floor_s(params, tokens, profile)
    return None if floor is None else floor / seconds


def projection_table(points: list, profile: DeviceProfile) -> list[str]:
    """Markdown rows of the roofline floors a device implies for measured points: the weight and cache bytes
    and parameter counts come from the points (measured elsewhere); the times are projections, not
    measurements."""
    rows = ["| model | context | weights + cache (GB) | decode floor (ms/token) | max tokens/s | "
            "prefill floor (ms) |", "| --- | --- | --- | --- | --- | --- |"]
    # One row per model and context: every decode backend returns the same cache (eager's point is used).
    decode = {(p.model, p.context): p for p in points if p.kind == "decode" and p.ok and p.backend == "eager"}
    for p in (decode[k] for k in sorted(decode)):
        read = decode_read_bytes(p)
        floor = decode_floor_s(read, 0, profile)
        pre = prefill_floor_s(p.params, p.context, profile)
        rows.append(f"| {p.model} | {p.context} | {read / 1e9:.2f} | "
                    f"{floor * 1e3:.2f} | {1 / floor:.0f} | {'n/a' if pre is None else f'{pre * 1e3:.1f}'} |")
    return rows


PAPER_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def throughput_ceiling(params: int, weight_bytes: int, cache_bytes: int, batch: int, prompt: int, new: int,
                       profile: DeviceProfile) -> tuple[float | None, float | None]:
    """The most tokens per second a device can give ``batch`` sequences of ``prompt`` tokens generating ``new``
    each: (end to end, decode alone). Prefill at the bf16 peak (2 x params x tokens), then every decode step
    reading all weights and the batch's whole cache (``cache_bytes``: at the final length) at peak bandwidth."""
    if not profile.known:
        return None, None
    step = decode_floor_s(weight_bytes, cache_bytes, profile)
    prefill = prefill_floor_s(params, batch * prompt, profile)
    decode = batch / step
    if prefill is None:
        return None, decode
    return batch * new / (prefill + (new - 1) * step), decode


def throughput_projection(models: list[tuple[str, int, int, Callable[[int], int]]], profile: DeviceProfile,
                          prompt: int = 2048, new: int = 128, batches=PAPER_BATCHES) -> list[str]:
    """Markdown rows: per model and batch the weights plus cache a batch needs, whether that fits the device's
    memory (a lower bound on what a run needs: activations come on top), and the throughput ceilings.
    ``models``: (name, params, weight bytes, cache bytes of ``batch`` sequences at ``prompt + new`` tokens)."""
    rows = ["| model | batch | weights + cache (GB) | fits in memory | max tokens/s end to end | max decode tokens/s |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name, params, weights, cache_of in models:
        for batch in batches:
            cache = cache_of(batch)
            need = weights + cache
            fits = profile.memory_gb is None or need <= profile.memory_gb * 1e9
            total, decode = throughput_ceiling(params, weights, cache, batch, prompt, new, profile)
            rows.append(f"| {name} | {batch} | {need / 1e9:.1f} | {'yes' if fits else 'no'} | "
                        f"{'n/a' if total is None or not fits else f'{total:.0f}'} | "
                        f"{'n/a' if decode is None or not fits else f'{decode:.0f}'} |")
    return rows


# The share of a device's memory a projection keeps free for what the allocator's peak leaves out: the CUDA
# context, the caching allocator's fragmentation (phi-2's eager batch of 128 on the H200: an allocator peak of
# 118 GB, 135 GB held by the process as NVML saw it), and on unified memory the OS and the CPU side.
FIT_HEADROOM = 0.15


def measured_fit_projection(points: list, profile: DeviceProfile, headroom: float = FIT_HEADROOM) -> list[str]:
    """Markdown rows from another device's measured throughput points: per model, backend, prompt and batch the
    memory the run needed there (weights, what the backend held, the call's extra peak: activations included --
    the same bytes on any device, one model and dtype), whether that fits this device -- yes within
    (1 - ``headroom``) of its memory, borderline up to all of it, no past it -- the tokens per second measured
    there beside this device's roofline ceiling for the same weights and cache; then, per model, backend and
    prompt, the largest batch that fits and the largest borderline one. Points out of memory there say so (they
    needed more than that device had, so more than any batch it ran)."""
    rows = ["| model | backend | prompt | batch | measured need (GB) | fits | tokens/s measured there | "
            "ceiling here, tokens/s |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    largest: dict[tuple[str, str, int], list[int | None]] = {}  # [fits, borderline]
    capacity = profile.memory_gb * 1e9 if profile.memory_gb is not None else None
    for p in sorted((p for p in points if p.kind == "throughput"),
                    key=lambda p: (p.model, p.backend, p.context, p.batch)):
        key = (p.model, p.backend, p.context)
        largest.setdefault(key, [None, None])
        over = p.memory.over_weights_bytes if p.ok else None
        if not p.ok or over is None or p.weight_bytes is None:
            rows.append(f"| {p.model} | {p.backend} | {p.context} | {p.batch} | {p.status} there | | | |")
            continue
        need = p.weight_bytes + over
        fits = "yes" if capacity is None or need <= capacity * (1 - headroom) else (
            "borderline" if need <= capacity else "no")
        total, _ = throughput_ceiling(p.params, p.weight_bytes, p.memory.cache_bytes or 0, p.batch, p.context,
                                      p.new_tokens, profile)
        for i, kind in enumerate(("yes", "borderline")):
            if fits == kind:
                largest[key][i] = max(largest[key][i] or 0, p.batch)
        rows.append(f"| {p.model} | {p.backend} | {p.context} | {p.batch} | {need / 1e9:.1f} | {fits} | "
                    f"{p.timing.tokens_per_s:.0f} | {'n/a' if total is None or fits == 'no' else f'{total:.0f}'} |")
    rows += ["", "| model | backend | prompt | largest batch that fits (measured need) | largest borderline |",
             "| --- | --- | --- | --- | --- |"]
    rows += [f"| {m} | {b} | {c} | {'none' if n is None else n} | {'-' if bl is None else bl} |"
             for (m, b, c), (n, bl) in largest.items()]
    return rows
