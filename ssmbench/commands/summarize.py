"""The summary a benchmark run prints (per-model tables, spreads, calibration, crossovers), re-read from a stored
points file, and optionally its scaling report: a committed baseline read with the current code.

    ssmbench summarize baselines/h200/points-synthetic-bf16.json [--report DIR]

Several files (runs of one device split over sessions, e.g. each model's throughput sweep) are summarised as one
run: they must come from the same device, torch, transformers and Mamba implementation (kernels or the reference
loop), and a point measured in two of them is refused.
"""

import argparse
import json
import os
import sys
from pathlib import Path

from ssmbench.point import SCHEMA_VERSION
from ssmbench.results import ResultStore, summary_lines, write_report
from ssmbench.safeio import UnsafeOutput, atomic_write_text, check_report_folder, printable


def _identity(p) -> tuple:
    return (p.model, p.kind, p.context, p.batch, p.new_tokens, p.backend, p.dtype)


def merge(stores: list[tuple[Path, ResultStore]]) -> ResultStore:
    """One store of several runs' points: same device, torch, transformers and Mamba implementation in every file's
    header, no point twice."""
    first_path, first = stores[0]
    merged = ResultStore(None, dict(first.meta), list(first.points))
    seen = {_identity(p): first_path for p in first.points}
    said = {key: first_path for key in first.meta}  # which file gave the merged header each value
    for path, store in stores[1:]:
        for key in ("device", "torch", "transformers", "mamba_impl"):
            # transformers: in the header since 2026-11-29 evening; files from before have none, and compare on
            # the rest -- against the value any earlier file gave, so a third file cannot differ from the second
            if key == "transformers" and not (store.meta.get(key) and merged.meta.get(key)):
                continue
            if store.meta.get(key) != merged.meta.get(key):
                raise ValueError(f"{path} was measured with {key} {store.meta.get(key)!r}, "
                                 f"{said.get(key, first_path)} with {merged.meta.get(key)!r}: only runs of one device, "
                                 "torch, transformers and Mamba implementation are summarised together")
        for p in store.points:
            if _identity(p) in seen:
                raise ValueError(f"{p.model} {p.kind} @ {p.context} (batch {p.batch}, {p.backend}) is in both "
                                 f"{seen[_identity(p)]} and {path}: summarise one of them")
            seen[_identity(p)] = path
            merged.points.append(p)
        for key, value in store.meta.items():  # what an earlier file's header lacks (transformers, before it had it)
            if merged.meta.get(key) in (None, ""):
                merged.meta[key], said[key] = value, path
        models = [m for m in str(store.meta.get("models", "")).split(",") if m]
        known = [m for m in str(merged.meta.get("models", "")).split(",") if m]
        merged.meta["models"] = ",".join(known + [m for m in models if m not in known])
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("points", type=Path, nargs="+",
                        help="results files written by benchmark runs (--ssm-results-file) on one device")
    parser.add_argument("--report", type=Path, help="also write the scaling report (plots, README.md) here")
    parser.add_argument("--write", type=Path, metavar="FILE",
                        help="also write the merged points to FILE (a results file naming the files it merged: one "
                             "baseline of a sweep split over sessions)")
    args = parser.parse_args(argv)
    if args.write is not None and (args.write.exists() or args.write.is_symlink()):
        parser.error(f"{args.write} exists{' (a link)' if args.write.is_symlink() else ''}: nothing is overwritten "
                     "(remove it first)")
    if args.report is not None and (why := check_report_folder(args.report)):
        parser.error(f"--report {args.report}: {why}")
    stores = []
    for path in args.points:
        if not path.is_file():
            parser.error(f"no points file at {path}")
        try:
            store = ResultStore.read(path)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            parser.error(f"{path} is not a results file of a benchmark run ({type(exc).__name__}: {exc})")
        if not store.points:
            parser.error(f"{path} holds no points (not a results file of a benchmark run?)")
        stores.append((path, store))
    try:
        store = merge(stores)
    except ValueError as exc:
        parser.error(str(exc))
    # the merged file first: a summary cut short (its reader gone: summarize.py ... | head) loses nothing
    written = None
    if args.write is not None:
        meta = dict(store.meta) | {"merged_from": [str(path) for path, _ in stores]}
        try:
            args.write.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(args.write, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666))  # claimed
            atomic_write_text(args.write, json.dumps({"schema": SCHEMA_VERSION, "run": "merged", "meta": meta,
                                                      "points": [p.to_json() for p in store.points]}, indent=1))
        except OSError as exc:
            parser.error(f"merged points not written to {args.write}: {type(exc).__name__}: {exc}")
        written = f"merged points: {args.write}"
    try:
        for line in summary_lines(store):
            print(printable(line))
    except BrokenPipeError:  # its reader is gone (| head): the files below are still written
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # what its buffer holds, discarded
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- the rest of the prints, for the process's life
    if written:
        print(written)
    if args.report:
        try:
            for path in write_report(store, args.report):
                print(f"scaling report: {path}")
        except (OSError, UnsafeOutput) as exc:  # the summary above stands
            parser.error(f"scaling report not written to {args.report}: {type(exc).__name__}: {exc}")
    return 0


