"""The suite's pytest plugin. Installed, pytest loads only its on-switch (``entry.py``, the ``pytest11`` entry
point ``ssmbench``), which registers this module where a project turns it on (``ssmbench = true`` in its ini
file, as the suite's pytest.ini has) or ``-p pytest_ssmbench.plugin`` asks for it; a bare checkout loads it from
the root conftest.py. Every hook the suite implements is defined here, once, and calls the concern's module in a
fixed order."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssmbench import compare

from . import baselines, gate, kernels, options, settings, summary, sweep, xdist

pytest_plugins = ["pytest_ssmbench.fixtures"]

MARKERS = (
    "quick: fast checks for every machine (tiny models everywhere, cheap checks of full-size models on a GPU)",
    "slow: long checks (full-size saves, long sweeps); not in the quick tier",
    "gpu: needs a CUDA device (full-size models); skipped with a reason elsewhere",
    "conformance: behaviour checks, Mamba and Transformer through the same generate() API",
    "benchmark: timing and memory measurements through pytest-benchmark",
    "selftest: tests of the suite's own machinery (no models needed)",
    "family(*names): run only for models of these families (ssm, attention)",
    "source(*names): run only for models from these sources (tiny, synthetic, pretrained)",
    "needs(*pieces): skip, saying which, where the model's architecture lacks a piece (kernels, suite_graph, "
    "layers, cache_bytes, boundaries)",
    "heavy: costly on full-size models; those instances go to the slow tier",
    "gpu_only(reason): needs a CUDA device whatever the model; skipped elsewhere with the reason",
    "after_sweep: reads the points the benchmark sweep measured; runs last",
    "gate: the regression gate's points (pytest -m gate: its preset of models, contexts, backends and batches)",
    "xdist_group(name): tests that stay on one xdist worker (one per model); declared here for -p no:xdist too",
)


def pytest_addhooks(pluginmanager) -> None:
    from . import hooks

    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    from .entry import INI, INI_HELP

    parser.addini(INI, type="bool", default=False, help=INI_HELP)  # where the entry point is not installed
    options.add_options(parser)


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config: pytest.Config):
    # A wrapper runs before every plain implementation, xdist's own (tryfirst) included, whatever order the
    # entry points were loaded in: the suite must choose --dist before xdist turns -n into "load".
    xdist.cmdline_main(config)
    return (yield)


def foreign_code(rootpath: Path) -> str | None:
    """Why this run would not test the checkout it runs in, or None: in a checkout of the suite (its root holds
    ``pytest_ssmbench``), the plugin and library imported from elsewhere -- an editable install of another
    checkout, or an installed copy -- whose code, not this checkout's, would run (a second clone run with the
    ``pytest`` of an environment the first was installed in)."""
    here = Path(__file__).resolve().parent.parent
    root = rootpath.resolve()
    if not (root / "pytest_ssmbench" / "plugin.py").is_file() or here == root:
        return None
    return (f"this checkout is {root}, but the suite's plugin and library were imported from {here} (installed "
            "in this environment from there): that code, not this checkout's, would run. Run `python -m pytest` "
            "here, or `pip install -e .` in this checkout")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    foreign = foreign_code(config.rootpath)
    if foreign:
        raise pytest.UsageError(foreign)
    if not config.pluginmanager.hasplugin("benchmark"):
        raise pytest.UsageError("the ssmbench suite measures through pytest-benchmark, which is not active in this "
                                "run (-p no:benchmark, or not installed): drop -p no:benchmark, or pip install "
                                "pytest-benchmark")
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    settings.configure(config)  # first: pins an xdist worker's GPU before anything touches CUDA
    options.check_values(config)
    options.check_outputs(config)
    sweep.check_options(config)
    baselines.configure(config)  # before pytest-benchmark's own configure reads the baselines


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """A comparison without power (``ssmbench.compare.Powerless``: the model's noise floor would pass anything)
    is a skip that says so, not a pass, named by the test's node id (``-rs`` groups skips by place and reason).
    The call phase only: no fixture compares logits."""
    try:
        return (yield)
    except compare.Powerless as exc:
        pytest.skip(f"{item.nodeid}: {exc}")


def pytest_report_header(config: pytest.Config) -> list[str]:
    gpu = settings.settings(config).device.type == "cuda"
    return settings.header(config) + gate.header(config, gpu) + baselines.header(config) + xdist.header(config)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    sweep.parametrize(metafunc)  # the sweep's axes first: test ids read test_x[ctx512-eager-synthetic-mamba]
    settings.parametrize_specs(metafunc)


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]):
    gate.mark_items(config, items, settings.settings(config).device.type == "cuda")  # before -m selects
    result = yield
    xdist.restore_group_tags(config, items)  # after xdist tagged the items (its hook runs before this one)
    sweep.order_items(items)
    return result


def pytest_collection_finish(session: pytest.Session) -> None:
    kernels.collection_finish(session)


def pytest_sessionstart(session: pytest.Session) -> None:
    baselines.sessionstart(session)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    settings.sessionfinish(session)
    kernels.sessionfinish(session)
    baselines.sessionfinish(session)
    gate.sessionfinish(session, settings.settings(session.config).device.type == "cuda")
    xdist.worker_report(session.config)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    try:
        summary.write(terminalreporter, config)
    except Exception as exc:  # noqa: BLE001 -- a summary never turns a run (a failed collection) into a traceback
        terminalreporter.write_sep("!", "ssmbench: the suite's summary could not be written", red=True)
        terminalreporter.write_line(f"{type(exc).__name__}: {exc} (the run's own results above stand; points "
                                    "already written stay written)", red=True)


@pytest.hookimpl(optionalhook=True)  # pytest-benchmark's hooks: absent with -p no:benchmark (refused above)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    baselines.update_machine_info(config, machine_info)


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_compare_machine_info(config: pytest.Config, benchmarksession, machine_info: dict,
                                          compared_benchmark: dict) -> None:
    baselines.compare_machine_info(config, benchmarksession, machine_info, compared_benchmark)


# pytest-xdist's hooks (optional: the suite also runs with -p no:xdist)

@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    return xdist.make_scheduler(config, log)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    return xdist.auto_num_workers(config)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_setupnodes(config: pytest.Config, specs) -> None:
    xdist.setup_nodes(config, specs)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    xdist.configure_node(node)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    xdist.node_down(node)
    kernels.node_down(node)
