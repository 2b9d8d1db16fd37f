"""scripts/version_sweep.py: which releases --spread picks, and how a run's JUnit XML is counted."""

import importlib.util
from pathlib import Path

import pytest
from packaging.version import Version

pytestmark = [pytest.mark.quick, pytest.mark.selftest]

_spec = importlib.util.spec_from_file_location(
    "version_sweep", Path(__file__).resolve().parents[2] / "scripts" / "version_sweep.py")
sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweep)


def test_spread_takes_each_minors_newest_patch_first_and_last_included():
    versions = [Version(v) for v in ("4.46.0", "4.46.3", "4.47.1", "4.48.0", "4.48.3", "5.0.0", "5.1.0", "5.1.2",
                                     "5.2.0")]
    assert [str(v) for v in sweep.spread(versions, 3)] == ["4.46.3", "4.48.3", "5.2.0"]
    assert [str(v) for v in sweep.spread(versions, 10)] == ["4.46.3", "4.47.1", "4.48.3", "5.0.0", "5.1.2", "5.2.0"]


def test_junit_counts_tell_failures_xfails_and_skips_apart(tmp_path):
    xml = tmp_path / "r.xml"
    xml.write_text("""<testsuites><testsuite>
      <testcase classname="tests.conformance.test_cache" name="test_a[tiny-mamba]"/>
      <testcase classname="tests.conformance.test_cache" name="test_b[tiny-mamba]"><failure message="x"/></testcase>
      <testcase classname="tests.conformance.test_cache" name="test_c[tiny-phi]"><error message="y"/></testcase>
      <testcase classname="tests.conformance.test_pad" name="test_d"><skipped type="pytest.xfail"/></testcase>
      <testcase classname="tests.conformance.test_pad" name="test_e"><skipped type="pytest.skip"/></testcase>
    </testsuite></testsuites>""")
    assert sweep.junit_counts(xml) == {"passed": 1, "failed": 2, "xfailed": 1, "skipped": 1,
                                       "failures": ["test_cache::test_b[tiny-mamba]", "test_cache::test_c[tiny-phi]"]}
