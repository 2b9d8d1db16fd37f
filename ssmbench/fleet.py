"""Several devices side by side: each device's baseline (its points files) and devices with no measurement yet
(projected from another device's byte counts and parameter counts onto their own roofline), in one self-contained
HTML page -- plots embedded as PNG data, no network needed to view it.

Per figure (time to first token, time per token, extra peak memory), model and backend: each device's figure
against context, its roofline floor beside it (prefill: 2 x params x tokens at the bf16 peak; decode: weights and
cache read once per token), and the ratio figure / floor. Two measured devices whose ratios differ by more than
``disagree`` per cent are flagged: one of them runs further from its own hardware limit than the other, which a
plain speed ratio between the devices would not show. A projected device (no measurement yet) shows its floors
for the source device's bytes and parameters, and the source's memory figures (the same bytes), labelled
projected everywhere they appear; its times are never invented from another device's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from . import devices
from .point import Point
from .store import ResultStore

FIGURES = {  # kind -> (title, unit, scale)
    "prefill": ("time to first token", "ms", 1e3),
    "decode": ("time per token (steady decode)", "ms", 1e3),
    "memory": ("extra peak memory of the prefill", "GB", 1e-9),
}
POINT_KIND = {"prefill": "prefill", "decode": "decode", "memory": "prefill"}  # the points each figure reads


@dataclass
class Device:
    label: str
    profile: devices.DeviceProfile
    source: str  # where its points came from
    points: list[Point]
    projected_from: "Device | None" = None

    @property
    def projected(self) -> bool:
        return self.projected_from is not None

    @functools.cached_property
    def by_key(self) -> dict[tuple, Point]:
        return {_key(p): p for p in self.points}


class FleetError(ValueError):
    pass


def points_files(path: Path) -> list[Path]:
    """A results file, or the results files of a folder (``*points*.json``: a baseline's points-*.json, a run's
    points.json, the default .benchmarks/ssmbench-points.json), largest first."""
    if not path.exists():
        raise FleetError(f"{path}: does not exist")
    if path.is_file():
        return [path]
    files = sorted(path.glob("*points*.json"), key=lambda f: -f.stat().st_size)
    if not files:
        raise FleetError(f"{path}: no points files (*points*.json, written by --ssm-results-file)")
    return files


def load_device(path: Path) -> Device:
    """A baseline folder (its points files; where several measured one point, the largest file's wins) or one
    results file. Files of different devices in one folder are refused: their points would be shown as one
    device's."""
    path = Path(path)
    seen: dict[tuple, Point] = {}
    names: dict[str, str] = {}
    for f in points_files(path):
        try:
            store = ResultStore.read(f)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FleetError(f"{f}: not a results file ({type(exc).__name__}: {exc})") from None
        names[f.name] = store.meta.get("device") or "?"
        for p in store.points:
            seen.setdefault(_key(p), p)
    if len(set(names.values())) > 1:
        raise FleetError(f"{path}: points of several devices ({', '.join(f'{d} in {n}' for n, d in names.items())}): "
                         "give their files one by one")
    device_name = next(iter(names.values()))
    if device_name == "?":
        raise FleetError(f"{path}: its points files do not say which device measured them (meta.device)")
    profile = devices.profile_for(device_name)
    return Device(f"{profile.name} (measured, {path})", profile, str(path), list(seen.values()))


def project(source: Device, key: str) -> Device:
    profile = devices.by_key(key)
    return Device(f"{profile.name} (projected from {source.label})", profile, source.source, source.points,
                  projected_from=source)


def _key(p: Point) -> tuple:
    return (p.model, p.kind, p.backend, p.context, p.batch)


def _floor(p: Point, kind: str, profile: devices.DeviceProfile) -> float | None:
    if kind == "prefill":
        return devices.prefill_floor_s(p.params, p.batch * p.context, profile)
    if kind == "decode":
        return devices.decode_floor_s(devices.decode_read_bytes(p), 0, profile)
    return None


def _measured(p: Point, kind: str) -> float | None:
    """The figure ``kind`` reads from a point of ``POINT_KIND[kind]``."""
    if kind == "prefill":
        return p.timing.ttft_s
    if kind == "decode":
        return p.timing.decode_s_per_token
    return p.memory.extra_peak_bytes


@dataclass
class Cell:
    value: float | None
    floor: float | None
    projected: bool
    status: str = "ok"

    @property
    def ratio(self) -> float | None:
        return self.value / self.floor if self.value and self.floor else None


def cell(device: Device, kind: str, key: tuple) -> Cell | None:
    p = device.by_key.get(key)
    if p is None:
        return None
    if not p.ok:
        return Cell(None, None, device.projected, p.status)
    floor = _floor(p, kind, device.profile)
    if not device.projected:
        return Cell(_measured(p, kind), floor, False)
    if kind == "memory":  # the same bytes on any device: the source's figure, labelled projected
        source = cell(device.projected_from, kind, key)
        return Cell(source.value if source else None, None, True)
    # Times: only the floor. Scaling a measured time by the floors' ratio would scale its host-bound part with
    # the GPU (eager decode runs 60-80x over its floor on the H200, launch-bound, not bandwidth-bound).
    return Cell(None, floor, True)


def rows(fleet: list[Device], kind: str) -> list[tuple[tuple, list[Cell | None]]]:
    """Every (model, kind, backend, context, batch) some device measured, with each device's cell."""
    keys = sorted({_key(p) for d in fleet for p in d.points if p.kind == POINT_KIND[kind] and p.batch == 1})
    out = []
    for key in keys:
        cells = [cell(d, kind, key) for d in fleet]
        if any(c is not None and c.value is not None for c in cells):
            out.append((key, cells))
    return out


def disagreements(cells: list[Cell | None], percent: float) -> list[tuple[int, int, float]]:
    """Pairs of measured devices whose figure / floor ratios differ by more than ``percent``: (i, j, per cent)."""
    out = []
    for i, a in enumerate(cells):
        for j in range(i + 1, len(cells)):
            b = cells[j]
            if a and b and not a.projected and not b.projected and a.ratio and b.ratio:
                diff = abs(a.ratio - b.ratio) / min(a.ratio, b.ratio) * 100
                if diff > percent:
                    out.append((i, j, diff))
    return out


def names(fleet: list[Device]) -> list[str]:
    """Short names for headers, legends and notes: the device's, with its source where two share one."""
    plain = [d.profile.name for d in fleet]
    return [n + (f" [{Path(d.source).name}]" if plain.count(n) > 1 else "") for n, d in zip(plain, fleet, strict=True)]


def build(paths: list[Path], project_keys: list[str] = ()) -> list[Device]:
    """Measured devices from folders or files; a folder named after a known device profile with no points
    (baselines/dgx-spark) and every ``project_keys`` entry: projected from the first measured device."""
    fleet: list[Device] = []
    pending: list[str] = list(project_keys)
    keys = {p.key for p in devices.PROFILES}
    for path in paths:
        path = Path(path)
        if path.is_dir() and not list(path.glob("points-*.json")) and path.name in keys:
            pending.append(path.name)
            continue
        fleet.append(load_device(path))
    if pending and not fleet:
        raise FleetError(f"nothing measured to project {', '.join(pending)} from: give a baseline folder first")
    for key in pending:
        if key not in keys:
            raise FleetError(f"unknown device {key!r}; known: {', '.join(sorted(keys))}")
        fleet.append(project(fleet[0], key))
    return fleet
