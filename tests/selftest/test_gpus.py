"""GPU pinning for pytest-xdist workers, with fake GPU lists and caller masks (no GPU needed)."""

from types import SimpleNamespace

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
        gpu = gpus.pin_worker(worker, environ, gpus.visible_gpus(environ, 8))
        pinned.append((gpu, environ["CUDA_VISIBLE_DEVICES"]))
    assert pinned == [("2", "2"), ("3", "3")]


def test_no_gpu_leaves_the_environment_alone():
    environ = {}
    assert gpus.pin_worker("gw1", environ, gpus.visible_gpus(environ, 0)) is None and environ == {}


def test_more_workers_than_gpus_is_refused_with_the_fix():
    with pytest.raises(gpus.PinningError, match=r"-n 3 .* 2 visible GPU\(s\) \(0, 1\); use -n 2 or -n auto"):
        gpus.check_worker_count(3, ["0", "1"])
    with pytest.raises(gpus.PinningError):
        gpus.pin_worker("gw2", {}, gpus.visible_gpus({}, 2))
    gpus.check_worker_count(5, [])  # CPU-only: any number of workers for the CPU tiers


def test_device_cpu_shares_out_no_gpus(monkeypatch):
    """--device cpu workers use no GPU: -n is not bounded by the GPU count and nothing is pinned (a 1-GPU box
    must still run `pytest -n 2 --device cpu`)."""
    from pytest_ssmbench import xdist

    monkeypatch.setattr(gpus, "physical_gpu_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def config(device):
        return SimpleNamespace(getoption=lambda name, default=None: device if name == "ssm_device" else default)

    assert xdist.worker_gpus(config("auto")) == ["0", "1"]
    assert xdist.worker_gpus(config("cuda")) == ["0", "1"]
    assert xdist.worker_gpus(config("cpu")) == []
    assert xdist.auto_num_workers(config("cpu")) is None  # xdist's own default: one per CPU


def test_worker_ids():
    assert gpus.worker_index("gw12") == 12
    with pytest.raises(gpus.PinningError):
        gpus.worker_index("master")


def test_costliest_model_group_is_handed_out_first(monkeypatch, pytestconfig):
    """With two workers, the two full-size models go out first (one per worker), not after the tiny ones
    that xdist's count-ordered queue puts in front."""
    if not hasattr(pytestconfig.option, "dist"):
        pytest.skip("pytest-xdist is not active in this run (-p no:xdist or not installed)")
    from collections import OrderedDict

    import xdist.scheduler as scheduler

    from pytest_ssmbench import xdist
    from pytest_ssmbench.settings import settings

    large = sorted(s.name for s in settings(pytestconfig).specs if s.large)
    if len(large) < 2:
        pytest.skip(f"needs two full-size models in the model set; this run has {large}")
    monkeypatch.setattr(pytestconfig.option, "dist", "loadgroup")
    monkeypatch.setattr(pytestconfig.option, "tx", ["2*popen"])
    taken = []
    monkeypatch.setattr(scheduler.LoadGroupScheduling, "_assign_work_unit",
                        lambda self, node: taken.append(self.workqueue.popitem(last=False)[0]))
    sched = xdist.make_scheduler(pytestconfig, None)
    heavy = gpus.group_name(large[1], "test_compiled_backend_matches_eager")
    queue = [("tiny-mamba", 60), ("tiny-phi", 55), (large[0], 12), ("tests/t.py::test_one", 1), (large[1], 10),
             (heavy, 1)]
    sched.workqueue = OrderedDict((scope, {f"{scope}::{i}": False for i in range(n)}) for scope, n in queue)
    for _ in queue:
        sched._assign_work_unit(None)
    assert taken == [heavy, large[0], large[1], "tiny-mamba", "tiny-phi", "tests/t.py::test_one"]
    monkeypatch.setattr(pytestconfig.option, "dist", "load")
    assert xdist.make_scheduler(pytestconfig, None) is None  # other modes: xdist's own


@pytest.mark.parametrize("nodeid, expected", [
    ("tests/conformance/test_cache.py::test_step[tiny-mamba-7]", "tiny-mamba"),
    ("tests/benchmarks/test_latency.py::test_latency_decode[ctx512-eager-synthetic-mamba]", "synthetic-mamba"),
    ("tests/conformance/test_models.py::test_dtype[synthetic-phi-torch.float16]", "synthetic-phi"),
    ("tests/selftest/test_gpus.py::test_worker_ids", None),
    ("tests/selftest/test_backends.py::test_decode_path[ssm-None-eager-x]", None),
])
def test_model_of_a_test_comes_from_its_id(nodeid, expected):
    from pytest_ssmbench import xdist

    assert xdist.model_of(nodeid, {"tiny-mamba", "tiny-phi", "synthetic-mamba", "synthetic-phi"}) == expected


def test_a_junk_cuda_visible_devices_is_named_and_means_nothing_without_gpus():
    assert gpus.visible_gpus({"CUDA_VISIBLE_DEVICES": "junk"}, 0) == []  # no GPU here: nothing to mask
    with pytest.raises(gpus.PinningError, match="CUDA_VISIBLE_DEVICES='junk': 'junk' is not a GPU index or GPU-/MIG-"):
        gpus.visible_gpus({"CUDA_VISIBLE_DEVICES": "junk"}, 2)
    uuid = "GPU-8f2a1c3e-0000-1111-2222-333344445555"
    assert gpus.visible_gpus({"CUDA_VISIBLE_DEVICES": f"1,{uuid}"}, 2) == ["1", uuid]


def test_workers_on_several_hosts_take_their_own_hosts_gpus():
    """--tx 2*ssh=a --tx 2*ssh=b: gw2 is the first worker on host b and takes b's first GPU, not a third one."""
    specs = [SimpleNamespace(ssh="-p 2222 gpu-a"), SimpleNamespace(ssh="me@gpu-a -p 2222"),
             SimpleNamespace(ssh="-C -o BatchMode=yes gpu-b"), SimpleNamespace(ssh="gpu-b"),
             SimpleNamespace(ssh=None, socket=None)]
    hosts = [gpus.host_of(s) for s in specs]
    assert hosts == ["gpu-a", "gpu-a", "gpu-b", "gpu-b", "localhost"]
    slots = gpus.host_slots(hosts)
    assert slots == [0, 1, 0, 1, 0]
    pinned = []
    for i, slot in enumerate(slots):
        env = {"CUDA_VISIBLE_DEVICES": "0,1"}
        pinned.append(gpus.pin_worker(f"gw{i}", env, ["0", "1"], slot))
        assert env["CUDA_VISIBLE_DEVICES"] == pinned[-1]
    assert pinned == ["0", "1", "0", "1", "0"]
    with pytest.raises(gpus.PinningError, match="gw2 is worker 3 on this host, which has 2 visible GPU"):
        gpus.pin_worker("gw2", {}, ["0", "1"], 2)


def test_cpu_workers_share_their_hosts_cores():
    """Two workers on 2 cores each taking both (torch's default) ran the quick tier in 164 s instead of 24."""
    from pytest_ssmbench.settings import cpu_threads

    assert cpu_threads({}, 8) is None  # not a worker: torch's default
    assert cpu_threads({"workerid": "gw0", "workercount": 2}, 2) == 1
    assert cpu_threads({"workerid": "gw3", "workercount": 4, "ssmbench_host_workers": 2}, 16) == 8  # per host
    assert cpu_threads({"workerid": "gw0", "workercount": 3}, 2) == 1  # never 0

