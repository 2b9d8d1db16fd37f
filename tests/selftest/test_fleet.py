"""The fleet page: the H200 baseline beside the DGX Spark projection, flags where two measured devices sit at
different distances from their rooflines, and the page as a real headless browser renders it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ssmbench import fleet
from ssmbench.render.html import render
from tests.selftest.child import ROOT

pytestmark = [pytest.mark.selftest]

H200 = ROOT / "baselines" / "h200"


def test_h200_beside_the_dgx_spark_projection():
    devices = fleet.build([H200, ROOT / "baselines" / "dgx-spark"])
    assert [d.projected for d in devices] == [False, True]
    page = render(devices)
    assert f"NVIDIA H200 SXM (measured, {H200})" in page
    assert f"DGX Spark (GB10) (projected from NVIDIA H200 SXM (measured, {H200}))" in page
    assert "third-party figure" in page  # the bf16 peak every projected prefill floor rests on, and its source
    # the projection shows floors, never a time measured on another device
    prefill = fleet.rows(devices, "prefill")
    assert prefill and all(cells[1].value is None and cells[1].floor for _, cells in prefill)
    assert all(cells[0].value and cells[0].floor and cells[0].ratio > 1 for _, cells in prefill)
    plots = {(k[0], k[2], kind) for kind in fleet.FIGURES for k, _ in fleet.rows(devices, kind)}
    assert page.count("<img ") == len(plots) and len(plots) >= 6
    assert "One measured device: no two to compare" in page and "row(s) flagged" not in page


def _second_device(tmp_path: Path, name: str, slower: float) -> Path:
    """The H200's points as if measured on another device: ``slower`` times the H200's phi-2 prefill at 512."""
    data = json.loads((H200 / "points-synthetic-bf16.json").read_text())
    data["meta"]["device"] = name
    for p in data["points"]:
        p["device"] = name
        if p["model"] == "synthetic-phi" and p["kind"] == "prefill" and p["context"] == 512:
            p["timing"]["ttft_s"] *= slower
    out = tmp_path / "points-other.json"
    out.write_text(json.dumps(data))
    return out


@pytest.mark.quick
def test_two_measured_devices_far_apart_from_their_rooflines_are_flagged(tmp_path):
    """An H100 SXM (989 TFLOP/s, as the H200) measuring phi-2's prefill at 512 three times slower sits three
    times further from the same floor: flagged; every other prefill point has the same ratio on both."""
    other = _second_device(tmp_path, "NVIDIA H100 80GB HBM3", 3.0)
    devices = fleet.build([H200, other])
    flagged = [(key, fleet.disagreements(cells, 25.0)) for key, cells in fleet.rows(devices, "prefill")]
    flagged = [(key, f) for key, f in flagged if f]
    assert [(key[0], key[3]) for key, _ in flagged] == [("synthetic-phi", 512)]
    assert flagged[0][1][0][2] == pytest.approx(200.0)
    close = fleet.build([H200, _second_device(tmp_path, "NVIDIA H100 SXM", 1.1)])
    assert not any(fleet.disagreements(cells, 25.0) for _, cells in fleet.rows(close, "prefill"))
    # the H100's 3350 GB/s against the H200's 4800: the same decode times sit 43 % further from its floor
    decode = [fleet.disagreements(cells, 25.0) for _, cells in fleet.rows(close, "decode")]
    assert decode and all(d and d[0][2] == pytest.approx(4800 / 3350 * 100 - 100) for d in decode)


def test_the_page_names_the_flagged_row(tmp_path):
    page = render(fleet.build([H200, _second_device(tmp_path, "NVIDIA H100 80GB HBM3", 3.0)]))
    assert "1 row(s) flagged" in page and "NVIDIA H200 SXM vs NVIDIA H100 SXM: ratios 200 % apart" in page


@pytest.mark.quick
def test_bad_fleet_input_says_what_is_wrong(tmp_path):
    with pytest.raises(fleet.FleetError, match="no points files"):
        fleet.build([tmp_path])
    with pytest.raises(fleet.FleetError, match="does not exist"):
        fleet.build([tmp_path / "nowhere"])
    (tmp_path / "README.md").write_text("# not json")
    with pytest.raises(fleet.FleetError, match="README.md: not a results file"):
        fleet.build([tmp_path / "README.md"])
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(H200 / "points-synthetic-bf16.json", mixed / "points-a.json")
    _second_device(mixed, "NVIDIA H100 SXM", 1.0)
    with pytest.raises(fleet.FleetError, match="points of several devices .*give their files one by one"):
        fleet.build([mixed])
    with pytest.raises(fleet.FleetError, match="nothing measured to project dgx-spark from"):
        fleet.build([ROOT / "baselines" / "dgx-spark"])
    with pytest.raises(fleet.FleetError, match="unknown device 'tpu'; known: "):
        fleet.build([H200], ["tpu"])
    run = subprocess.run([sys.executable, "-m", "ssmbench", "fleet", str(tmp_path), "-o",
                          str(tmp_path / "x.html")], capture_output=True, text=True, check=False)
    assert run.returncode == 2 and "no points files" in run.stderr and not (tmp_path / "x.html").exists()


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(BROWSER is None, reason="no headless browser: Debian's chromium (apt-get install chromium) "
                    "renders the fleet page for this check")
def test_the_page_renders_in_a_headless_browser(tmp_path):
    page = tmp_path / "fleet.html"
    made = subprocess.run([sys.executable, "-m", "ssmbench", "fleet", str(H200),
                           str(ROOT / "baselines" / "dgx-spark"), "-o", str(page)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert made.returncode == 0, made.stderr
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000"]
    dom = subprocess.run([BROWSER, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120, check=False)
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body, f"the browser returned no page: {dom.stderr[-500:]}"
    images = page.read_text().count("<img ")
    # the page's own script ran after load and found every plot decoded with a size
    assert 'data-rendered="yes"' in body.group(0) and f'data-images="{images}"' in body.group(0), body.group(0)
    shot = tmp_path / "fleet.png"
    subprocess.run([BROWSER, *flags, "--window-size=1200,1500", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, text=True, timeout=120, check=False)
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)
    assert pixels.shape[:2] == (1500, 1200) and pixels.std() > 0.05, "the screenshot is blank"


@pytest.mark.quick
def test_the_same_device_twice_is_told_apart(tmp_path):
    again = tmp_path / "h200-again"
    again.mkdir()
    shutil.copy(H200 / "points-synthetic-bf16.json", again / "points-synthetic-bf16.json")
    devices = fleet.build([H200, again])
    assert fleet.names(devices) == ["NVIDIA H200 SXM [h200]", "NVIDIA H200 SXM [h200-again]"]
    assert devices[0].label != devices[1].label


@pytest.mark.quick
def test_a_throughput_only_run_is_refused_not_rendered_empty(tmp_path):
    data = json.loads((H200 / "points-synthetic-bf16.json").read_text())
    data["points"] = [p for p in data["points"] if p["kind"] == "throughput"]
    (tmp_path / "points.json").write_text(json.dumps(data))
    with pytest.raises(fleet.FleetError, match="no prefill or decode points"):
        render(fleet.build([tmp_path]))
