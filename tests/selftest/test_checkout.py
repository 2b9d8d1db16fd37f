"""The run tests the checkout it runs in: a second clone run with the `pytest` of an environment where the first
was installed (editable) imported the first's plugin and library, and tested that code silently (QA pass)."""

from pathlib import Path

import pytest

from pytest_ssmbench import plugin

pytestmark = [pytest.mark.quick, pytest.mark.selftest]

ROOT = Path(plugin.__file__).resolve().parent.parent


def test_a_checkout_whose_code_was_imported_from_elsewhere_is_a_usage_error(tmp_path):
    other = tmp_path / "second-clone"
    (other / "pytest_ssmbench").mkdir(parents=True)
    (other / "pytest_ssmbench" / "plugin.py").write_text("")
    why = plugin.foreign_code(other)
    assert why is not None and str(other) in why and str(ROOT) in why and "python -m pytest" in why
    assert plugin.foreign_code(ROOT) is None, "the checkout the code came from"
    assert plugin.foreign_code(tmp_path) is None, "a directory that is not a checkout of the suite"
