"""transformers releases side by side in one virtual environment, for the version sweep: each release in a
folder of its own (``pip install --no-deps --target``, with whatever of its requirements this environment does not
satisfy), what it would not have installed hidden from it, and the sweep's table for the README."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

OLDEST = Version("4.46.0")  # the oldest release the suite claims (pyproject.toml's transformers>=)


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check"],
                          capture_output=True, text=True, check=False)


def releases(pre: bool = False) -> list[Version]:
    """Every final transformers release from OLDEST on, as the package index lists them (``pre``: and every
    pre-release)."""
    out = pip("index", "versions", "transformers", *(["--pre"] if pre else []))
    found = re.search(r"Available versions: (.*)", out.stdout)
    if out.returncode or not found:
        raise SystemExit(f"could not list transformers releases: {out.stderr.strip() or out.stdout.strip()}")
    versions = []
    for text in found.group(1).split(","):
        try:
            v = Version(text.strip())
        except InvalidVersion:
            continue
        if (pre or not v.is_prerelease) and v >= OLDEST:
            versions.append(v)
    return sorted(versions)


def newest_prerelease(versions: list[Version]) -> Version | None:
    """The newest pre-release, where it is newer than every final release (else None: nothing to see early)."""
    finals = [v for v in versions if not v.is_prerelease]
    pres = [v for v in versions if v.is_prerelease]
    if not pres or (finals and max(pres) < max(finals)):
        return None
    return max(pres)


def all_minors(versions: list[Version]) -> list[Version]:
    """The newest patch of every minor release."""
    return spread([v for v in versions if not v.is_prerelease], 10**6)


def spread(versions: list[Version], count: int) -> list[Version]:
    """The newest patch of each minor release, then ``count`` of those evenly across the range (first and last
    always in)."""
    newest: dict[tuple[int, int], Version] = {}
    for v in versions:
        newest[(v.major, v.minor)] = max(v, newest.get((v.major, v.minor), v))
    minors = sorted(newest.values())
    if count >= len(minors):
        return minors
    picks = {round(i * (len(minors) - 1) / (count - 1)) for i in range(count)}
    return [minors[i] for i in sorted(picks)]


def _installed(folder: Path) -> dict[str, str]:
    """Distributions in ``folder`` (name normalised -> version)."""
    return {_norm(d.metadata["Name"]): d.version for d in metadata.distributions(path=[str(folder)])}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _missing(folder: Path) -> list[str]:
    """Requirements of the distributions in ``folder`` that neither ``folder`` nor this environment satisfies
    (``folder`` shadows the environment: it comes first on PYTHONPATH)."""
    here = _installed(folder)
    wanted = []
    for dist in metadata.distributions(path=[str(folder)]):
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            name = _norm(req.name)
            version = here.get(name)
            if version is None:
                try:
                    version = metadata.version(req.name)
                except metadata.PackageNotFoundError:
                    version = None
            if version is None or not req.specifier.contains(version, prereleases=True):
                wanted.append(f"{req.name}{req.specifier}")
    return sorted(set(wanted))


# Packages transformers uses when they are installed that a release's own install would not bring: hidden from a
# release that does not require them (as in a fresh `pip install transformers==X`), seen by one that does (5.25
# requires kernels). Without this, this environment's kernels (there for 5.25) made 4.57 ... 5.2x try the hub's
# kernels for every model: "Either a revision or a version must be specified", or a network error.
OPTIONAL_INTEGRATIONS = ("kernels",)


def _required_by_release(folder: Path) -> set[str]:
    """The names the release in ``folder`` requires (its own requirements, not extras)."""
    names = set()
    for dist in metadata.distributions(path=[str(folder)]):
        if _norm(dist.metadata["Name"] or "") != "transformers":
            continue
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                names.add(_norm(req.name))
    return names


def _hide(folder: Path, names: list[str]) -> None:
    """A ``sitecustomize`` in the folder (first on PYTHONPATH, so every process of the run imports it) that makes
    ``names`` unimportable: ``sys.modules[name] = None``, which ``importlib.util.find_spec`` -- transformers' test
    of whether an integration is installed -- reads as absent."""
    body = "".join(f"sys.modules.setdefault({n!r}, None)\n" for n in names)
    (folder / "sitecustomize.py").write_text(
        f"# written by ssmbench version-sweep: what this release would not have installed\nimport sys\n\n{body}")


def _broken_outside(folder: Path, hidden: tuple[str, ...] = ()) -> list[str]:
    """Distributions of this environment that ``folder`` breaks by shadowing what they need (this environment's
    ``kernels``, which 5.25 requires, wants a huggingface_hub that 4.52's folder pins below): a user of that
    release would have a version of them that fits, so the sweep installs one into the folder too."""
    here = _installed(folder)
    broken = []
    for dist in metadata.distributions():
        name = _norm(dist.metadata["Name"] or "")
        if not name or name in here or name in hidden:
            continue
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            version = here.get(_norm(req.name))
            if version is not None and not req.specifier.contains(version, prereleases=True):
                broken.append(dist.metadata["Name"])
                break
    return sorted(set(broken))


def install(version: Version, root: Path) -> Path:
    """``root/transformers-VERSION``, made once: the release and, level by level, what it needs that this
    environment lacks."""
    target = root / f"transformers-{version}"
    if (target / ".complete").exists():
        return target
    partial = root / f"transformers-{version}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    todo = [f"transformers=={version}"]
    for _ in range(6):  # transformers -> huggingface_hub -> requests -> urllib3 ...: a few levels at most
        out = pip("install", "-q", "--no-deps", "--upgrade", "--no-compile", "--target", str(partial), *todo)
        if out.returncode:
            raise RuntimeError(f"pip install {' '.join(todo)}: {(out.stderr or out.stdout).strip()[-500:]}")
        todo = _missing(partial)
        if not todo:
            break
    else:
        raise RuntimeError(f"requirements still missing after 6 rounds: {todo}")
    required = _required_by_release(partial)
    hidden = tuple(n for n in OPTIONAL_INTEGRATIONS if _norm(n) not in required)
    if hidden:
        _hide(partial, list(hidden))
    broken = _broken_outside(partial, tuple(_norm(n) for n in hidden))
    if broken:  # a version of each that fits the release's pins, resolved by pip with those pins held
        pins = [f"{k}=={v}" for k, v in sorted(_installed(partial).items())]
        out = pip("install", "-q", "--upgrade", "--no-compile", "--target", str(partial), *broken, *pins)
        if out.returncode:
            raise RuntimeError(f"{', '.join(broken)} of this environment do not fit transformers {version}'s "
                               f"requirements, and no version that does installs: {(out.stderr or out.stdout)[-400:]}")
    (partial / ".complete").write_text(" ".join(f"{k}=={v}" for k, v in sorted(_installed(partial).items())))
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


MARK_BEGIN, MARK_END = "<!-- version-sweep table: begin -->", "<!-- version-sweep table: end -->"


def commit(root: Path) -> str:
    """The commit the checkout at ``root`` is at (with '+changes' where the work tree differs from it)."""
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=False)
    if head.returncode:
        return "unknown"
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False)
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def render_table(sweep: dict) -> str:
    """The README's table from a sweep's JSON: the commit and date, then a row per run of consecutive releases
    with the same counts (``4.48.3 ... 4.51.3``; each release's own row is in the JSON), seconds as a range."""
    rows = sweep["rows"]
    lines = [f"Run at commit {sweep['commit']} on {sweep['date']} ({sweep['where']}; `{sweep['command']}`): "
             f"{len(rows)} releases, {sum(1 for r in rows if 'error' not in r and not r['failed'])} with no failure.",
             "", "| transformers | passed | failed | xfailed | skipped | seconds |",
             "| --- | --- | --- | --- | --- | --- |"]

    def counts(r: dict) -> tuple:
        return ("error",) if "error" in r else (r["passed"], r["failed"], r["xfailed"], r["skipped"])

    groups: list[list[dict]] = []
    for r in rows:
        if groups and counts(groups[-1][-1]) == counts(r):
            groups[-1].append(r)
        else:
            groups.append([r])
    for group in groups:
        first, last = group[0], group[-1]
        name = first["version"] if len(group) == 1 else f"{first['version']} ... {last['version']}"
        if "error" in first:
            lines.append(f"| {name} | - | could not run | - | - | - |")
            continue
        low, high = min(r["seconds"] for r in group), max(r["seconds"] for r in group)
        seconds = f"{low:.0f}" if round(low) == round(high) else f"{low:.0f}-{high:.0f}"
        lines.append(f"| {name} | {first['passed']} | {first['failed']} | {first['xfailed']} | {first['skipped']} | "
                     f"{seconds} |")
    return "\n".join(lines)


def write_readme(readme: Path, sweep: dict) -> None:
    text = readme.read_text()
    if text.count(MARK_BEGIN) != 1 or text.count(MARK_END) != 1:
        raise SystemExit(f"{readme}: needs exactly one {MARK_BEGIN!r} and one {MARK_END!r} line around the table")
    head, rest = text.split(MARK_BEGIN)
    _, tail = rest.split(MARK_END)
    readme.write_text(f"{head}{MARK_BEGIN}\n{render_table(sweep)}\n{MARK_END}{tail}")
