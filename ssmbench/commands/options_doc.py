"""Print the options reference (docs/options.md) from the plugin's option definitions."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    from pytest_ssmbench.options import reference_markdown

    print(reference_markdown(), end="")
    return 0
