"""A self-test plugin: a deliberate regression in every SSM mixer the suite loads (``ssmbench.inject``), to prove
the regression gate catches it. Not loaded unless asked for::

    pytest -p pytest_ssmbench.inject --ssm-inject slow-mixer -m gate --benchmark-compare=...

An injected run must not become a baseline: ``--benchmark-save``, ``--benchmark-autosave`` and ``--benchmark-json``
are refused, its machine_info and points file say ``ssm_inject``, and a baseline or allowance file that says so is
refused."""

from __future__ import annotations

import pytest

from ssmbench import inject

injections_key = pytest.StashKey[list]()


def _kind(value: str) -> str:
    import argparse

    try:
        inject.parse(value)
    except inject.InjectionError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("ssmbench").addoption(
        "--ssm-inject", dest="ssm_inject", type=_kind, default=None, metavar="KIND[:SCALE]",
        help=f"deliberate regression in every SSM mixer, to prove the gate catches it: {', '.join(inject.KINDS)}")


def _asked(config: pytest.Config) -> tuple[str, float] | None:
    value = config.getoption("ssm_inject", None)
    return inject.parse(value) if value else None


def pytest_configure(config: pytest.Config) -> None:
    config.stash[injections_key] = []
    if _asked(config) and (config.getoption("benchmark_save", None) or config.getoption("benchmark_autosave", None)
                           or config.getoption("benchmark_json", None)):
        raise pytest.UsageError("--ssm-inject with --benchmark-save/--benchmark-autosave/--benchmark-json: a run with "
                                "a deliberate regression must not become a baseline")


def pytest_report_header(config: pytest.Config) -> list[str]:
    asked = _asked(config)
    if not asked:
        return []
    return [f"ssmbench: INJECTED REGRESSION {asked[0]} (scale {asked[1]:g}) in every SSM mixer: this run's figures "
            "are deliberately wrong (pytest_ssmbench.inject)"]


@pytest.hookimpl(optionalhook=True)
def pytest_ssmbench_model_loaded(config: pytest.Config, lm) -> None:
    asked = _asked(config)
    if asked:
        config.stash[injections_key].append((lm.name, inject.inject(lm, *asked)))


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Stamped into any benchmark file the run writes anyway: a baseline or an allowance refuses it."""
    if _asked(config):
        machine_info["ssm_inject"] = config.getoption("ssm_inject")


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    asked = _asked(config)
    if not asked:
        return
    terminalreporter.write_sep("-", f"ssmbench inject: {asked[0]} (scale {asked[1]:g})")
    for name, done in config.stash.get(injections_key, []):  # pytest's Stash.get needs its default
        added = f", {done.bytes_added / 1e6:.1f} MB allocated by it" if done.bytes_added else ""
        terminalreporter.write_line(f"{name}: {done.mixers} SSM mixers, acted on {done.calls} calls{added}")
    if not config.stash.get(injections_key, []):
        terminalreporter.write_line("no model was loaded: nothing was injected")
