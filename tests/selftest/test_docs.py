"""The documents a user reads first stay true to the checkout: the README within 12 KB, every file it and the
guides link to present, and no recipe pointing at a path that is gone."""

import re
from pathlib import Path

import pytest

pytestmark = [pytest.mark.quick, pytest.mark.selftest]
ROOT = Path(__file__).resolve().parents[2]
GUIDES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]


def test_the_readme_is_at_most_12_kb():
    assert len((ROOT / "README.md").read_bytes()) <= 12 * 1024


@pytest.mark.parametrize("name", GUIDES)
def test_every_link_and_path_a_guide_names_exists(name):
    path = ROOT / name
    text = path.read_text()
    links = [m for m in re.findall(r"\]\(([^)#\s]+)", text) if "://" not in m]
    missing = [m for m in links if not (path.parent / m).exists()]
    assert not missing, f"{name} links to {missing}"
    assert "scripts/" not in text, f"{name} names scripts/, which is the ssmbench command now"
    assert "--rsyncdir ." not in text, f"{name} gives the --rsyncdir recipe pytest-xdist 4 removed"


def test_no_module_of_the_suite_is_over_300_lines():
    """The shape a maintainer can live in: concerns split into modules a reader can hold (issue #33)."""
    files = [p for folder in ("ssmbench", "pytest_ssmbench") for p in (ROOT / folder).rglob("*.py")]
    long = {str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > 300}
    assert not long, long
