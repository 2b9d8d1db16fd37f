"""A run's points, in memory and in a results file: written atomically after every point (an interrupted sweep
keeps what it measured), merged under a lock by the processes of one run, never written over another run's file
or a file that is not a points file, every earlier run's file kept; read back validated."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .point import SCHEMA_VERSION, Point
from .safeio import UnsafeOutput, atomic_write_bytes, atomic_write_text, not_regular, open_lock, unique_path


def is_points_file(data: Any) -> bool:
    """A results file's shape: a JSON object with a list of points (any schema version)."""
    return isinstance(data, dict) and isinstance(data.get("points"), list)


class NotAPointsFile(UnsafeOutput):
    pass


def check_results_path(path: Path) -> str | None:
    """Why a run may not write its points to ``path`` (None: it may): not a regular file (a device node, a FIFO,
    a link), or an existing file that is not a points file (a truncated one, a pytest-benchmark baseline, notes
    given by a typo), which would be lost."""
    why = not_regular(path)
    if why or not path.exists():
        return why
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return f"{path} exists and is not a points file ({type(exc).__name__}): it would be lost; move it or " \
               "name another file"
    if not is_points_file(data):
        return f"{path} exists and is not a points file (no list of points): it would be lost; move it or name " \
               "another file"
    return None


@dataclass
class ResultStore:
    """A run's points, in memory and in a results file. Several processes of one run (xdist workers, sharing
    ``run``) merge their points in the file under a lock, each replacing only its own (``writer``). A file
    another run has claimed since this one last wrote is never overwritten: this run's points go beside it,
    in ``<name>.<run>.json``, and ``moved_to`` says where. A file an earlier run left there is replaced, its
    content kept first as ``<name>.<its run>.previous`` (a name no other backup holds: every earlier run is kept;
    ``replaced``: how many points it held and where they went; no ``.json`` suffix, so a folder's
    ``*points*.json`` never reads the old run as this one's). A file that is not a points file, or a write that
    fails (a full disk), is never reported as written: ``write_error`` says why, and no later point tries again."""

    path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    points: list[Point] = field(default_factory=list)
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    writer: str = field(default_factory=lambda: f"pid{os.getpid()}")
    moved_to: Path | None = None
    replaced: tuple[int, Path] | None = None
    write_error: str | None = None

    def add(self, point: Point) -> None:
        self.points.append(point)
        if self.path is not None and self.write_error is None:
            try:
                self._write()
            except (OSError, UnsafeOutput) as exc:
                self.write_error = f"{type(exc).__name__}: {exc}"
                warnings.warn(f"ssmbench: points not written to {self.moved_to or self.path}: {self.write_error}; "
                              f"no further point is written (the summary still shows them)", stacklevel=2)

    @property
    def written_to(self) -> Path | None:
        """Where this run's points are, or None where nothing was written."""
        if self.path is None or self.write_error is not None or not self._written:
            return None
        return self.moved_to or self.path

    def _write(self) -> None:
        path = self.moved_to or self.path
        why = not_regular(path)
        if why:
            raise UnsafeOutput(why)
        with _locked(path):
            current = _read_json(path)
            if path.exists() and not is_points_file(current):
                raise NotAPointsFile(check_results_path(path) or f"{path} is not a points file")
            others: list[dict] = []
            if current is not None and current.get("run") == self.run:
                others = [p for p in current.get("points", []) if p.get("writer") != self.writer]
            elif current is not None and current.get("run") is not None and self._written and not self.moved_to:
                # Another run took the file since this one wrote to it: keep both, say where this one went.
                self.moved_to = path.with_name(f"{path.stem}.{self.run}{path.suffix}")
                return self._write()
            elif current is not None and not self._written and current.get("points"):
                # An earlier run's file: its points kept beside it, under a name of their own, before this run's
                # replace them.
                earlier = re.sub(r"[^A-Za-z0-9_-]", "", str(current.get("run") or "")) or "earlier"
                backup = unique_path(path.parent, f"{path.name}.{earlier}", ".previous")
                atomic_write_bytes(backup, path.read_bytes())
                self.replaced = (len(current["points"]), backup)
            mine = [p.to_json() | {"writer": self.writer} for p in self.points]
            atomic_write_text(path, json.dumps({"schema": SCHEMA_VERSION, "run": self.run, "meta": self.meta,
                                                "points": others + mine}, indent=1))
        self._written = True

    _written: bool = field(default=False, init=False, repr=False, compare=False)

    @classmethod
    def read(cls, path: Path) -> "ResultStore":
        """A results file of any schema version, validated: every point typed, its figures finite numbers in
        range, no point twice (``InvalidPoints`` names the file, the point and the field)."""
        data = json.loads(Path(path).read_text())
        if not is_points_file(data):
            raise InvalidPoints(f"{path}: not a points file (no list of points)")
        points = []
        for i, raw in enumerate(data["points"]):
            try:
                points.append(Point.from_json({k: v for k, v in raw.items() if k != "writer"}))
            except (TypeError, ValueError, AttributeError, KeyError) as exc:
                raise InvalidPoints(f"{path}: point {i}: {exc}") from None
        seen: dict[tuple, int] = {}
        for i, p in enumerate(points):
            key = (p.model, p.kind, p.context, p.batch, p.backend, p.new_tokens)
            if key in seen:
                raise InvalidPoints(f"{path}: point {i} repeats point {seen[key]} ({p.model} {p.kind} @ {p.context} "
                                    f"batch {p.batch}, {p.backend})")
            seen[key] = i
        meta = data.get("meta", {})
        if not isinstance(meta, dict):
            raise InvalidPoints(f"{path}: meta is not an object")
        return cls(None, meta, points)

    def select(self, **match) -> list[Point]:
        """Points whose identity fields (model, kind, context, backend, status, ...) equal ``match``."""
        return [p for p in self.points if all(getattr(p, k) == v for k, v in match.items())]

    def models(self) -> list[str]:
        return list(dict.fromkeys(p.model for p in self.points))


class InvalidPoints(ValueError):
    pass


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock beside ``path`` (``.<name>.lock``, never opened through a link), held while the file is
    read, merged and replaced."""
    fd = open_lock(path.with_name(f".{path.name}.lock"))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
