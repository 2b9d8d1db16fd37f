"""A run whose collection failed (or whose suite summary cannot be computed, e.g. on a transformers release the
suite does not yet know) ends with pytest's own result line and exit status, never a traceback from the
suite's terminal summary."""

import pytest

from .child import ROOT, run_pytest

pytestmark = pytest.mark.selftest

BREAK_SUMMARY = """
import pytest_ssmbench.summary as summary

def _broken(*args, **kwargs):
    raise AttributeError("'Func' object has no attribute '__code__'")

summary.write = _broken
"""


def test_a_failed_collection_ends_in_pytests_result_line_not_a_traceback(tmp_path):
    (tmp_path / "break_summary.py").write_text(BREAK_SUMMARY)
    broken = ROOT / "tests" / "selftest" / f"test_zz_broken_{tmp_path.name}.py"
    broken.write_text("import a_module_that_does_not_exist  # noqa\n")
    try:
        run = run_pytest(str(broken), "tests/selftest/test_impl.py::test_ops_from_calls", "-p", "break_summary",
                         env_extra={"PYTHONPATH": str(tmp_path)})
    finally:
        broken.unlink()
    out = run.stdout + run.stderr
    assert run.returncode == 2, out  # pytest's own: interrupted, errors during collection
    assert "Traceback (most recent call last)" not in out and "INTERNALERROR" not in out, out
    assert "1 error" in out and "the suite's summary could not be written" in out, out
    assert "'Func' object has no attribute '__code__'" in out, out
