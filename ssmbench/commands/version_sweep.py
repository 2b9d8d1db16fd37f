"""The quick tier on many transformers releases, side by side in this virtual environment: each release goes into
a folder of its own (``pip install --no-deps --target``, with whatever of its requirements this environment does
not satisfy -- tokenizers, huggingface_hub, ...), then ``PYTHONPATH=FOLDER pytest -m quick`` runs against it.
No new virtual environment per release; torch and everything else come from this one.

    ssmbench version-sweep 4.46.3 4.52.4 5.0.0          # these releases
    ssmbench version-sweep --spread 16                  # 16 releases across the supported range
    ssmbench version-sweep --all-minors --pre           # every minor's last patch, and a pre-release
    ssmbench version-sweep --spread 16 -- -k cache      # pytest arguments after --
    ssmbench version-sweep --table docs/version-sweep.json --readme README.md   # the README's table

Prints, per release: version | passed | failed | xfailed | skipped | seconds | what failed (and errors while
installing or importing, as a row of their own: the sweep goes on), then writes the rows as JSON (--json), with
the commit the suite ran at. ``--readme`` rewrites the README's table (between its version-sweep markers) from
that JSON: the table is never edited by hand. Folders are kept under --root (default .versions/, ignored by
git) and reused by later sweeps.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from packaging.version import InvalidVersion, Version

from ..releases import (
    all_minors,
    install,
    newest_prerelease,
    releases,
    render_table,
    spread,
    write_readme,
)
from ..releases import commit as commit_of


def checkout(start: Path | None = None) -> Path:
    """The suite's checkout the sweep runs: the folder, from ``start`` (the current one) upwards, whose pytest.ini
    turns the suite on; the current folder where none does (its pytest then says what is missing)."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        ini = folder / "pytest.ini"
        if ini.is_file() and "ssmbench = true" in ini.read_text():
            return folder
    return start


ROOT = checkout()


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def run_quick(version: Version, folder: Path, pytest_args: list[str], logs: Path, timeout_s: float) -> dict:
    """The quick tier against ``folder``: counts from pytest's JUnit XML, and the failed tests' ids."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join((str(folder), str(ROOT)))  # this checkout's suite, whatever is installed
    seen = subprocess.run([sys.executable, "-c", "import transformers; print(transformers.__version__)"],
                          env=env, capture_output=True, text=True, check=False)
    if seen.returncode or _version(seen.stdout.strip()) != version:
        raise RuntimeError(f"import transformers gave {seen.stdout.strip() or seen.stderr.strip()[-300:]}")
    xml = logs / f"{version}.xml"
    start = time.perf_counter()
    xml.unlink(missing_ok=True)
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "quick", "-q", "-rfE",
                          f"--junitxml={xml}", *pytest_args], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=False, timeout=timeout_s)
    seconds = time.perf_counter() - start
    (logs / f"{version}.log").write_text(run.stdout + run.stderr)
    row = {"version": str(version), "passed": 0, "failed": 0, "xfailed": 0, "skipped": 0,
           "seconds": round(seconds, 1), "exit": run.returncode, "failures": []}
    if not xml.exists():
        row["failures"] = [f"pytest exited {run.returncode} without a report: {run.stdout[-300:]}"]
        row["failed"] = 1
        return row
    row.update(junit_counts(xml))
    if run.returncode not in (0, 1):  # 2 interrupted, 3 internal error, 4 usage error, 5 nothing collected
        row["failed"] += 1
        row["failures"].append(f"pytest exited {run.returncode}")
    return row


def junit_counts(xml: Path) -> dict:
    """passed / failed / xfailed / skipped and the failed tests' ids from pytest's JUnit XML (an xfail is a
    ``skipped`` of type ``pytest.xfail``; a strict XPASS and an error count as failed)."""
    counts = {"passed": 0, "failed": 0, "xfailed": 0, "skipped": 0, "failures": []}
    for case in ET.parse(xml).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            counts["failed"] += 1
            counts["failures"].append(name)
        elif (skip := case.find("skipped")) is not None:
            counts["xfailed" if skip.get("type") == "pytest.xfail" else "skipped"] += 1
        else:
            counts["passed"] += 1
    return counts


def _public(argv: list[str]) -> list[str]:
    """The command's arguments without where this machine kept its files (--root, --json): what ran, not where."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--root", "--json"):
            skip = True
            continue
        if arg.startswith(("--root=", "--json=")):
            continue
        out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("versions", nargs="*", help="releases to run (default: --spread)")
    parser.add_argument("--spread", type=int, default=None, help="this many releases across the supported range")
    parser.add_argument("--all-minors", action="store_true", help="the newest patch of every minor release")
    parser.add_argument("--pre", action="store_true", help="and the newest pre-release, where one is newer")
    parser.add_argument("--table", type=Path, default=None, metavar="JSON",
                        help="run nothing: print (or with --readme, write) the table of this sweep's JSON")
    parser.add_argument("--readme", type=Path, default=None, help="rewrite this README's table from the JSON")
    parser.add_argument("--root", type=Path, default=ROOT / ".versions", help="where the releases are installed")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one release's run may take")
    argv = sys.argv[1:] if argv is None else list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)  # after "--": pytest's (argparse would take them as versions)
    args = parser.parse_args(argv[:cut])
    pytest_args = argv[cut + 1:]
    if args.table is not None:
        try:
            sweep = json.loads(args.table.read_text())
            table = render_table(sweep)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            parser.error(f"--table {args.table}: not a sweep's JSON ({type(exc).__name__}: {exc})")
        if args.readme:
            write_readme(args.readme, sweep)
            print(f"{args.readme}: table written from {args.table}")
        else:
            print(table)
        return
    if args.spread is not None and args.spread < 2:
        parser.error(f"--spread wants at least 2 releases (the oldest and the newest), got {args.spread}")
    if args.versions:
        try:
            versions = [Version(v) for v in args.versions]
        except InvalidVersion as exc:
            parser.error(str(exc))
    else:
        listed = releases(pre=args.pre)
        versions = all_minors(listed) if args.all_minors else spread(
            [v for v in listed if not v.is_prerelease], args.spread if args.spread is not None else 16)
        if args.pre and (pre := newest_prerelease(listed)) is not None:
            versions.append(pre)
    import datetime
    import platform

    import torch

    sweep = {"commit": commit_of(ROOT), "date": datetime.date.today().isoformat(),
             "where": f"CPU, tiny models, torch {torch.__version__}, Python {platform.python_version()}",
             "command": "ssmbench version-sweep " + " ".join(_public(argv)), "rows": []}
    args.root.mkdir(parents=True, exist_ok=True)
    logs = args.root / "logs"
    logs.mkdir(exist_ok=True)
    rows = sweep["rows"]
    print("| transformers | passed | failed | xfailed | skipped | seconds | what failed |", flush=True)
    print("| --- | --- | --- | --- | --- | --- | --- |", flush=True)
    for version in versions:
        try:
            row = run_quick(version, install(version, args.root), pytest_args, logs, args.timeout)
        except Exception as exc:  # one release that cannot install or import must not end the sweep
            row = {"version": str(version), "error": f"{type(exc).__name__}: {exc}"}
        rows.append(row)
        if "error" in row:
            print(f"| {version} | - | - | - | - | - | could not run: {row['error'][:300]} |", flush=True)
        else:
            failed = ", ".join(row["failures"]) or "-"
            print(f"| {version} | {row['passed']} | {row['failed']} | {row['xfailed']} | {row['skipped']} | "
                  f"{row['seconds']:.0f} | {failed} |", flush=True)
        if args.json:
            args.json.write_text(json.dumps(sweep, indent=1) + "\n")  # after every release: nothing run is lost
    if args.readme:
        write_readme(args.readme, sweep)
    return 1 if any("error" in r or r["failed"] for r in rows) else 0


