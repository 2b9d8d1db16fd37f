"""Writing files the way an installed tool run as root on a shared GPU box must: only regular files the run was
asked to write, each replaced atomically through a temporary file created exclusively in the target folder
(never opened through a link someone planted there), report folders claimed by a marker before anything in
them is replaced, and text that reaches HTML, Markdown or a terminal escaped for it."""

from __future__ import annotations

import html
import os
import re
import stat
import tempfile
from pathlib import Path

REPORT_MARKER = ".ssmbench-report"


class UnsafeOutput(ValueError):
    """A path the suite refuses to write: why, naming it."""


def not_regular(path: Path) -> str | None:
    """Why ``path`` is not something a run may replace with a file (None: missing, or a regular file that is no
    link). A device node, a FIFO, a socket, a folder or a symbolic link (even to a regular file) is refused."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symbolic link (to {os.readlink(path)}): the suite writes no file through a link"
    if stat.S_ISDIR(st.st_mode):
        return f"{path} is a folder, not a file"
    if not stat.S_ISREG(st.st_mode):
        kind = ("a character device" if stat.S_ISCHR(st.st_mode) else "a block device" if stat.S_ISBLK(st.st_mode)
                else "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "not a regular file")
        return f"{path} is {kind}, not a regular file"
    return None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write through a temporary file created exclusively (``mkstemp``) in the same folder and renamed over the
    target: a crash midway leaves the old file intact, and a link at the target's name is replaced, never
    written through."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as open() would create it (mkstemp makes it 0600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def open_lock(path: Path) -> int:
    """A lock file's descriptor: created if missing, never opened through a link (``O_NOFOLLOW``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o666)
    except OSError as exc:
        raise UnsafeOutput(f"lock file {path}: {exc.strerror} (a link there is not followed)") from exc


def unique_path(folder: Path, stem: str, suffix: str) -> Path:
    """A name in ``folder`` no file holds yet, created empty and exclusively: ``stem + suffix``, else with
    ``.2``, ``.3`` ... before the suffix."""
    for n in range(1, 10_000):
        path = folder / (f"{stem}{suffix}" if n == 1 else f"{stem}.{n}{suffix}")
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666))
        except FileExistsError:
            continue
        return path
    raise UnsafeOutput(f"{folder}: no free name for {stem}{suffix}")


def claim_report_folder(folder: Path, what: str = "report") -> None:
    """A folder a report may write into: missing, empty, or holding the marker an earlier report left. Anything
    else (a user's folder with their README.md and plots) is refused; the claim leaves the marker."""
    folder = Path(folder)
    why = check_report_folder(folder, what)
    if why:
        raise UnsafeOutput(why)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / REPORT_MARKER
    if not marker.exists():
        atomic_write_text(marker, f"This folder holds an ssmbench {what}: the next one may replace what it wrote.\n")


def check_report_folder(folder: Path, what: str = "report") -> str | None:
    """Why ``folder`` cannot take a report (None: it can), creating nothing."""
    folder = Path(folder)
    if not folder.exists():
        return None
    if not folder.is_dir():
        return f"{folder} is a file, not a folder"
    marker = folder / REPORT_MARKER
    if marker.is_symlink() or (marker.exists() and not marker.is_file()):
        return f"{marker} is not a regular file"
    if marker.exists() or not any(folder.iterdir()):
        return None
    return (f"{folder} is not empty and holds no {REPORT_MARKER} (no earlier {what} made it): the {what} writes "
            f"only into an empty folder or one a report made, so nothing of yours is replaced")


def md(text: object) -> str:
    """Text for Markdown, in a line (a heading, a table cell, a list item): no link, image, code span, table cell
    or raw HTML can come out of it -- HTML's characters as entities, a backtick and a pipe escaped, a bracket
    that would open a link's target or an image escaped, line breaks and other control characters shown as
    ``\\xNN``. Ordinary text (``model_set``, ``['a', 'b']``) reads as it is."""
    text = printable(str(text).replace("\\", "\\\\")).replace("\n", "\\x0a")
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("`", "\\`").replace("|", "\\|")
    return text.replace("](", "]\\(").replace("![", "!\\[")


def in_code_block(line: object) -> str:
    """A line for a fenced code block: nothing can close the fence early."""
    return printable(str(line)).replace("`" * 3, "'" * 3)


def htm(text: object) -> str:
    return html.escape(printable(str(text)), quote=True)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: object) -> str:
    """Text for a terminal: control characters (escape sequences' ESC among them) shown as ``\\xNN``."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))
