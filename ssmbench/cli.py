"""``ssmbench COMMAND [ARGS]``: the suite's tools as one command (installed with the package; ``python -m
ssmbench`` from a checkout). ``ssmbench COMMAND --help`` says what each takes."""

from __future__ import annotations

import importlib
import sys

from .commands import COMMANDS


def usage() -> str:
    width = max(map(len, COMMANDS))
    return "usage: ssmbench COMMAND [ARGS]\n\ncommands:\n" + "\n".join(
        f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"ssmbench: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"{__package__}.commands.{COMMANDS[name][0]}")
    if name == "report" and "--report" not in rest and not any(a.startswith("--report=") for a in rest):
        if len(rest) >= 2 and not rest[-1].startswith("-"):  # ssmbench report POINTS... DIR
            rest = [*rest[:-1], "--report", rest[-1]]
    sys.argv[0] = f"ssmbench {name}"
    return module.main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
