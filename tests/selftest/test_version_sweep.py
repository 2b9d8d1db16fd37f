"""ssmbench version-sweep (ssmbench.releases): which releases --spread picks, and how a run's JUnit XML is counted."""

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
from packaging.version import Version

from ssmbench import releases
from ssmbench.commands import version_sweep

pytestmark = pytest.mark.selftest
quick = pytest.mark.quick
sweep = types.SimpleNamespace(spread=releases.spread, junit_counts=version_sweep.junit_counts)
ROOT = Path(__file__).resolve().parents[2]


@quick
def test_spread_takes_each_minors_newest_patch_first_and_last_included():
    versions = [Version(v) for v in ("4.46.0", "4.46.3", "4.47.1", "4.48.0", "4.48.3", "5.0.0", "5.1.0", "5.1.2",
                                     "5.2.0")]
    assert [str(v) for v in sweep.spread(versions, 3)] == ["4.46.3", "4.48.3", "5.2.0"]
    assert [str(v) for v in sweep.spread(versions, 10)] == ["4.46.3", "4.47.1", "4.48.3", "5.0.0", "5.1.2", "5.2.0"]


@quick
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


@quick
def test_all_minors_and_the_newest_prerelease():
    versions = [Version(v) for v in ("4.46.0", "4.46.3", "5.24.0", "5.25.0", "5.25.1", "5.26.0rc1", "5.25.0rc1")]
    assert [str(v) for v in releases.all_minors(versions)] == ["4.46.3", "5.24.0", "5.25.1"]
    assert str(releases.newest_prerelease(versions)) == "5.26.0rc1"
    assert releases.newest_prerelease([v for v in versions if str(v) != "5.26.0rc1"]) is None  # older than 5.25


@quick
def test_a_release_that_does_not_require_an_integration_runs_without_it(tmp_path):
    """A release's folder hides what its own install would not bring (this environment's kernels, there for 5.25):
    a child process with the folder on its path cannot import it, and transformers' test reads it as absent."""
    releases._hide(tmp_path, ["json"])  # a module every environment has, to see the hiding work
    done = subprocess.run([sys.executable, "-c", "import importlib.util; print(importlib.util.find_spec('json'))"],
                          env={"PYTHONPATH": str(tmp_path), "PATH": ""}, capture_output=True, text=True, check=False)
    assert done.stdout.strip() == "None", done.stdout + done.stderr


# not quick: the sweep runs the quick tier before its own table exists
def test_the_readme_table_is_the_committed_sweeps_own(tmp_path):
    """The README's table is generated from docs/version-sweep.json (with the commit it ran at), never edited by
    hand: rendering the JSON again gives exactly what the README holds between its markers."""
    sweep_json = json.loads((ROOT / "docs" / "version-sweep.json").read_text())
    readme = (ROOT / "README.md").read_text()
    table = readme.split(releases.MARK_BEGIN + "\n", 1)[1].split("\n" + releases.MARK_END, 1)[0]
    assert table == releases.render_table(sweep_json)
    assert sweep_json["commit"] and len(sweep_json["rows"]) >= 38
