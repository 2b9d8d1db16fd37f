"""Running pytest (or Python) in a child process from a self-test, as a user would from a shell.

The child must not inherit the xdist worker variables of a self-test that itself runs under ``-n``:
pytest-benchmark reads ``PYTEST_XDIST_WORKER`` from the environment and would disable itself in the child.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def clean_env(drop: tuple[str, ...] = ()) -> dict[str, str]:
    """This process's environment without the variables pytest and xdist set for the running test (and
    ``drop``)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("PYTEST_XDIST_") and k != "PYTEST_CURRENT_TEST" and k not in drop}


def run_pytest(*args: str, cwd: Path = ROOT, timeout: int = 300, env_extra: dict[str, str] | None = None,
               drop_env: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--rootdir={ROOT}", *args],
                          cwd=cwd, env=clean_env(drop_env) | (env_extra or {}), capture_output=True, text=True,
                          timeout=timeout, check=False)
