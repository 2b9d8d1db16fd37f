"""The entry point (``pytest11: ssmbench``) pytest loads in every run of an environment the suite is installed
in. It registers the suite's on-switch and its options (their values must parse before the ini file that turns
the plugin on is found: a path given to ``--ssm-results-file`` would otherwise be taken for a test path), and
nothing else: the ini key ``ssmbench = true`` (the suite's pytest.ini sets it; ``-o ssmbench=true`` from the
command line), or ``-p pytest_ssmbench.plugin``, turns the plugin on. Off, another project's run gets no
fixture, parametrisation, header, summary or global setting (TF32, Triton's float32 dots) from the suite, and
imports neither torch nor transformers for it."""

from __future__ import annotations

import configparser
import importlib
from pathlib import Path

import pytest

INI = "ssmbench"
INI_HELP = ("turn the ssmbench suite's pytest plugin on for this project (the suite's own pytest.ini does); off, "
            "the installed plugin does nothing")


def pytest_addoption(parser: pytest.Parser) -> None:
    from . import options  # names only, no torch (ssmbench.names)

    parser.addini(INI, type="bool", default=False, help=INI_HELP)
    options.add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    """Before the project's conftests (the suite's fixtures and options must be there when they load): the
    plugin registered where this project turns it on and nothing registered it yet."""
    if not enabled(early_config):
        return
    plugin = importlib.import_module("pytest_ssmbench.plugin")
    if not early_config.pluginmanager.is_registered(plugin):
        early_config.pluginmanager.register(plugin, "ssmbench.plugin")


def enabled(config: pytest.Config) -> bool:
    """The ini file pytest read turns the suite on; or, where pytest read none (a path given to one of the
    suite's options moved its search off the project: ``--ssm-results-file /tmp/points.json`` is a test path to
    pytest's first look at the command line), the ini file of the directory pytest was started in, or of the
    ``--rootdir`` it was given, does."""
    if config.getini(INI):
        return True
    if config.inipath is not None:
        return False
    return any(_ini_turns_on(start) for start in {config.invocation_params.dir, config.rootpath})


def _ini_turns_on(start: Path) -> bool:
    """The first ancestor of ``start`` with a pytest configuration file: does it set ``ssmbench`` true?"""
    for folder in (start, *start.parents):
        for name, section in (("pytest.ini", "pytest"), ("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")):
            path = folder / name
            if path.is_file():
                parser = configparser.ConfigParser(interpolation=None)
                try:
                    parser.read(path)
                except configparser.Error:
                    return False
                if parser.has_section(section):
                    return parser.get(section, INI, fallback="false").strip().lower() in ("true", "1", "yes", "on")
                if name == "pytest.ini":
                    return False
        if (folder / "pyproject.toml").is_file():
            try:
                import tomllib
            except ImportError:  # Python 3.10: no reader in the standard library
                return False
            try:
                options = tomllib.loads((folder / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
            except (KeyError, TypeError, ValueError, OSError):
                continue
            return str(options.get(INI, "false")).lower() in ("true", "1", "yes", "on")
    return False
