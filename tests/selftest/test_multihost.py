"""The README's multi-host recipe, run for real on one machine: an ssh server on 127.0.0.1 only (Debian's
openssh-server, throwaway keys, a free non-default port), and the quick tier through two ``--tx ssh=`` workers on
it, over this checkout (``chdir=``; no rsync, which pytest-xdist deprecated in 3.0.2 and removes in 4.0). Every
test the quick tier collects here must have run there, and nothing else."""

from __future__ import annotations

import getpass
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.selftest.child import ROOT, clean_env, run_pytest

pytestmark = [pytest.mark.selftest]

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def loopback_ssh(tmp_path):
    """An sshd on 127.0.0.1 that lets this user in with a key made here; an ssh_config naming it ``loopback``.
    Stopped at the end, whatever happened."""
    if not Path(SSHD).exists() or not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        pytest.skip("no ssh server here: Debian's openssh-server (apt-get install openssh-server) gives "
                    f"{SSHD}, ssh and ssh-keygen")
    for key in ("host", "user"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / key)], check=True)
    shutil.copy(tmp_path / "user.pub", tmp_path / "authorized_keys")
    port = _free_port()
    (tmp_path / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp_path / 'host'}\n"
        f"AuthorizedKeysFile {tmp_path / 'authorized_keys'}\nStrictModes no\nUsePAM no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        f"PidFile {tmp_path / 'sshd.pid'}\n")
    (tmp_path / "ssh_config").write_text(
        f"Host loopback\n  HostName 127.0.0.1\n  Port {port}\n  User {getpass.getuser()}\n"
        f"  IdentityFile {tmp_path / 'user'}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile /dev/null\n  BatchMode yes\n  LogLevel ERROR\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # the privilege-separation directory sshd wants when root
    log = open(tmp_path / "sshd.log", "w")
    server = subprocess.Popen([SSHD, "-D", "-e", "-f", str(tmp_path / "sshd_config")], stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            probe = subprocess.run(["ssh", "-F", str(tmp_path / "ssh_config"), "loopback", "true"],
                                   capture_output=True, text=True, timeout=20)
            if probe.returncode == 0:
                break
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"the loopback ssh server did not let this user in: sshd "
                            f"{'exited ' + str(server.returncode) if server.poll() is not None else 'running'}; "
                            f"ssh said {probe.stderr.strip()[-300:]!r}; sshd said "
                            f"{(tmp_path / 'sshd.log').read_text()[-300:]!r}")
            time.sleep(0.3)
        yield tmp_path / "ssh_config"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _ran(junit: Path) -> set[str]:
    """Node ids of the test cases a JUnit file reports (pytest writes the module as dotted ``classname``;
    --dist loadgroup appends ``@group`` to a test's name, dropped here)."""
    ids = set()
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = re.sub(r"@[^\[\]]*\]?$", "", case.get("name"))
        if "[" in name and not name.endswith("]"):
            name += "]"
        ids.add(f"{case.get('classname').replace('.', '/')}.py::{name}")
    return ids


def _run_ssh_workers(python: str, tx: str, junit: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python, "-m", "pytest", "-p", "no:cacheprovider", f"--rootdir={ROOT}", "-m", "quick", "--ssm-device",
         "cpu", "--dist", "loadgroup", "--tx", tx, f"--junitxml={junit}", "-W", "error::DeprecationWarning:xdist",
         "-q"],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=600, check=False)


def test_quick_tier_through_two_ssh_workers_on_loopback(loopback_ssh, tmp_path):
    python = sys.executable
    tx = f"2*ssh_config={loopback_ssh}//ssh=loopback//python={python}//chdir={ROOT}"
    expected = run_pytest("-m", "quick", "--collect-only", "-q", "--ssm-device", "cpu", timeout=120)
    assert expected.returncode == 0, expected.stdout[-2000:] + expected.stderr[-2000:]
    collected = [line.strip() for line in expected.stdout.splitlines() if "::" in line]
    assert collected, "the quick tier collected nothing here"
    start = time.monotonic()
    junit = tmp_path / "junit.xml"
    # xdist copies the controller's pytest and _pytest into each ssh worker's working directory (this checkout):
    # removed afterwards where this run put them, or they would shadow the installed pytest here.
    copies = [ROOT / name for name in ("pytest", "_pytest") if not (ROOT / name).exists()]
    try:
        run = _run_ssh_workers(python, tx, junit)
    finally:
        for path in copies:
            shutil.rmtree(path, ignore_errors=True)
    wall = time.monotonic() - start

    out = run.stdout + run.stderr
    assert run.returncode == 0, f"exit {run.returncode} after {wall:.0f} s:\n{out[-4000:]}"
    # both workers came up over ssh, on the loopback host, and said where they ran
    for worker in ("gw0", "gw1"):
        assert f"ssmbench: {worker} on loopback:" in out, out[-3000:]
        assert f"ssmbench: {worker} ran on {socket.gethostname()}" in out, out[-3000:]
    ran = _ran(junit)
    missing, extra = sorted(set(collected) - ran), sorted(ran - set(collected))
    assert not missing, f"{len(missing)} of the {len(collected)} quick tests never ran through ssh: {missing[:10]}"
    assert not extra, f"tests ran through ssh that the quick tier does not collect here: {extra[:10]}"
    from ssmbench.registry import resolve_model_set

    for spec in resolve_model_set("tiny"):
        if spec.arch.unsupported():
            continue
        assert any(f"[{spec.name}" in name for name in ran), f"no test of {spec.name} ran through ssh"
    result = next((line for line in reversed(out.splitlines()) if re.search(r"\d+ passed", line)), "?")
    print(f"two ssh workers on loopback: {len(ran)} tests in {wall:.0f} s: {result.strip()}")
