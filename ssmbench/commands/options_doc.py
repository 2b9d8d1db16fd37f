"""Print the options reference (docs/options.md) from the plugin's option definitions."""

from __future__ import annotations

import argparse

from pytest_ssmbench.options import OPTIONS

EXTRA = (  # the options add_options defines beside OPTIONS: (names, metavar, ini, help)
    (("--ssm-model-path", "--model-path"), "KEY=DIR", None,
     "local checkpoint directory for an architecture; also SSMBENCH_PATH_KEY; repeatable"),
    (("--ssm-calibrate", "--calibrate"), None, None,
     "re-measure a sample of prefill, decode and throughput points the plain way (plain generate(), a synchronize "
     "and a clock, the allocator's peak) right after each, and fail a point whose figure differs by more than "
     "--ssm-calibrate-tolerance"),
)


def reference_markdown() -> str:
    """docs/options.md: every option of the suite, from the definitions above (a self-test holds the file to
    this, so the reference cannot drift from the code)."""
    lines = ["# Options", "",
             "Generated from `pytest_ssmbench/options.py` by `ssmbench options-doc > docs/options.md`; a self-test "
             "fails when this file and the code differ. Command line over ini file (`[pytest]` section) over "
             "default; a bad value on either is a usage error (exit 4) naming the valid ones. An old name is kept "
             "for one release.", "",
             "| option | old name | ini key | value | what |", "| --- | --- | --- | --- | --- |"]
    rows = [(names, metavar, ini, text) for names, _, _, ini, metavar, text in OPTIONS.values()] + list(EXTRA)
    for names, metavar, ini, text in rows:
        text = text.replace("%%", "%").replace("|", "\\|")
        lines.append(f"| `{names[0]}` | {', '.join(f'`{n}`' for n in names[1:]) or '-'} | "
                     f"{f'`{ini}`' if ini else '-'} | {f'`{metavar}`' if metavar else 'flag'} | {text} |")
    lines += ["", "The ini key `ssmbench = true` turns the suite's plugin on for a project (the suite's own "
              "`pytest.ini` sets it); without it an installed plugin does nothing in another project's run.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    print(reference_markdown(), end="")
    return 0
