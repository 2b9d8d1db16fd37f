"""Several pytest-benchmark files of one device as one baseline: a sweep split over sessions (each model's
throughput run) compared against as a whole with --benchmark-compare.

    ssmbench merge OUT.json RUN1.json RUN2.json ...

The files must share what a comparison needs (baselines.MUST_MATCH: GPU, model set, dtype policy) and the
software the figures came from (torch, transformers, Mamba implementation); a benchmark found in two of them is
refused. The merged file keeps every benchmark as measured, the last file's machine_info with the models of all,
and names each file it came from (commit_info.merged_from). Nothing is overwritten.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

from pytest_ssmbench.baselines import MUST_MATCH, invalid_baseline
from ssmbench.safeio import atomic_write_text

# the fields a baseline must share with a run comparing against it, and the software behind the figures
SAME = (*MUST_MATCH, "torch", "transformers", "mamba_impl")


def merge(files: list[tuple[Path, dict]]) -> dict:
    first_path, first = files[0]
    out = json.loads(json.dumps(files[-1][1]))  # a copy of the last
    benchmarks, seen, models = [], {}, []
    for path, data in files:
        for key in SAME:
            if data["machine_info"].get(key) != first["machine_info"].get(key):
                raise ValueError(f"{path} has {key} {data['machine_info'].get(key)!r}, {first_path} "
                                 f"{first['machine_info'].get(key)!r}: only one device's runs with the same "
                                 f"{', '.join(SAME)} merge")
        for bench in data["benchmarks"]:
            name = bench["fullname"]
            if name in seen:
                raise ValueError(f"{name} is in both {seen[name]} and {path}: merge one of them")
            seen[name] = path
            benchmarks.append(bench)
        models += [m for m in str(data["machine_info"].get("models", "")).split(",") if m and m not in models]
    out["benchmarks"] = benchmarks
    out["machine_info"]["models"] = ",".join(models)
    out.setdefault("commit_info", {})["merged_from"] = [
        {"file": str(path), "commit": data.get("commit_info", {}).get("id"), "datetime": data.get("datetime")}
        for path, data in files]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the merged file to write (must not exist)")
    parser.add_argument("files", type=Path, nargs="+", help="pytest-benchmark files (--benchmark-save's)")
    args = parser.parse_args(argv)
    if args.out.exists() or args.out.is_symlink():
        parser.error(f"{args.out} exists{' (a link)' if args.out.is_symlink() else ''}: nothing is overwritten "
                     "(remove it first)")
    number = re.match(r"(\d{4})_", args.out.name)
    clash = sorted(f.name for f in args.out.parent.glob(f"{number.group(1)}_*.json")) if number else []
    if clash:  # --benchmark-compare=NNNN would compare against both
        parser.error(f"{args.out.parent} already holds {', '.join(clash)}: --benchmark-compare={number.group(1)} "
                     "would compare against both; give the merged file the next free number")
    files = []
    for path in args.files:
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list) \
                    or not isinstance(data.get("machine_info"), dict):
                raise ValueError("not a pytest-benchmark file (no 'benchmarks' list or 'machine_info')")
            if why := invalid_baseline(data):
                raise ValueError(why)
        except (OSError, ValueError) as exc:
            parser.error(f"{path}: {type(exc).__name__}: {exc}")
        files.append((path, data))
    try:
        merged = merge(files)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666))  # claimed
        atomic_write_text(args.out, json.dumps(merged, indent=4))
    except OSError as exc:
        parser.error(f"cannot write {args.out}: {type(exc).__name__}: {exc}")
    print(f"{args.out}: {len(merged['benchmarks'])} benchmarks of {merged['machine_info']['models']} from "
          f"{len(files)} files")
    return 0


