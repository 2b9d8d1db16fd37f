"""GPU pinning for pytest-xdist workers, with fake GPU lists and caller masks (no GPU needed)."""

import pytest

from ssmbench import gpus

pytestmark = [pytest.mark.quick, pytest.mark.selftest]


@pytest.mark.parametrize("environ, physical, expected", [
    ({}, 4, ["0", "1", "2", "3"]),
    ({"CUDA_VISIBLE_DEVICES": "2,3"}, 4, ["2", "3"]),
    ({"CUDA_VISIBLE_DEVICES": "GPU-a1b2, GPU-c3d4"}, 2, ["GPU-a1b2", "GPU-c3d4"]),
    ({"CUDA_VISIBLE_DEVICES": ""}, 4, []),
    ({"CUDA_VISIBLE_DEVICES": "-1"}, 4, []),
    ({}, 0, []),
])
def test_visible_gpus_respect_the_callers_mask(environ, physical, expected):
    assert gpus.visible_gpus(environ, physical) == expected


def test_each_worker_gets_its_own_gpu_within_the_callers_mask():
    pinned = []
    for worker in ("gw0", "gw1"):
        environ = {"CUDA_VISIBLE_DEVICES": "2,3"}
        pinned.append((gpus.pin_worker(worker, environ, 8), environ["CUDA_VISIBLE_DEVICES"]))
    assert pinned == [("2", "2"), ("3", "3")]


def test_no_gpu_leaves_the_environment_alone():
    environ = {}
    assert gpus.pin_worker("gw1", environ, 0) is None and environ == {}


def test_more_workers_than_gpus_is_refused_with_the_fix():
    with pytest.raises(gpus.PinningError, match=r"-n 3 .* 2 visible GPU\(s\) \(0, 1\); use -n 2 or -n auto"):
        gpus.check_worker_count(3, ["0", "1"])
    with pytest.raises(gpus.PinningError):
        gpus.pin_worker("gw2", {}, 2)
    gpus.check_worker_count(5, [])  # CPU-only: any number of workers for the CPU tiers


def test_worker_ids():
    assert gpus.worker_index("gw12") == 12
    with pytest.raises(gpus.PinningError):
        gpus.worker_index("master")
