"""Device profiles and roofline arithmetic."""

import pytest

from ssmbench import devices

pytestmark = [pytest.mark.quick, pytest.mark.selftest]


@pytest.mark.parametrize("torch_name, key", [
    ("NVIDIA GB10", "dgx-spark"), ("NVIDIA H200", "h200"), ("NVIDIA H100 80GB HBM3", "h100-sxm"),
    ("NVIDIA H100 PCIe", "h100-pcie"), ("NVIDIA A100-SXM4-80GB", "a100-80gb"), ("NVIDIA L4", "l4"),
    ("NVIDIA GeForce RTX 4090", "rtx-4090"),
])
def test_known_devices_match(torch_name, key):
    assert devices.profile_for(torch_name).key == key


def test_unknown_device_runs_with_unknown_limits():
    p = devices.profile_for("NVIDIA Imaginary X9")
    assert not p.known and p.key == "nvidia-imaginary-x9"
    assert devices.decode_floor_s(10**9, 0, p) is None and devices.mbu(10**9, 0, 0.01, p) is None
    assert devices.mfu(10**9, 512, 0.1, p) is None


def test_floor_mbu_mfu_arithmetic():
    h200 = devices.by_key("h200")
    floor = devices.decode_floor_s(4_800_000_000, 0, h200)  # 4.8 GB at 4.8 TB/s
    assert floor == pytest.approx(1e-3)
    assert devices.mbu(4_800_000_000, 0, 2e-3, h200) == pytest.approx(0.5)
    assert devices.mfu(10**9, 1000, 2 * 10**12 / 989e12 * 2, h200) == pytest.approx(0.5)


def test_unknown_profile_key_names_valid_ones():
    with pytest.raises(KeyError, match="h200"):
        devices.by_key("h300")


def test_projection_has_one_row_per_model_and_context_whatever_the_backends():
    from ssmbench.point import Point

    point = {"kind": "decode", "status": "ok", "model": "m", "context": 512, "params": 10**9, "new_tokens": 8,
             "weight_bytes": 2 * 10**9, "cache_bytes": 10**6, "cache_bytes_formula": 10**6, "batch": 1}
    points = [Point.from_json(point | {"backend": b}) for b in ("eager", "compiled", "graphed")]
    rows = devices.projection_table(points, devices.by_key("dgx-spark"))
    assert len(rows) == 3 and rows[2].startswith("| m | 512 | 2.00 |"), rows


def test_throughput_ceiling_is_prefill_at_peak_then_steps_at_bandwidth():
    """1 GB/s and 1 TFLOP/s: a step reading 1 GB of weights + 1 GB of cache takes 2 s; prefill of 4 x 10 tokens
    with 1e9 params takes 2e9 x 40 / 1e12 = 0.08 s; 4 sequences x 3 new tokens over 0.08 + 2 x 2 s."""
    unit = devices.DeviceProfile("unit", "unit", (), 3, 1, 1)
    total, decode = devices.throughput_ceiling(10**9, 10**9, 10**9, 4, 10, 3, unit)
    assert total == pytest.approx(12 / 4.08) and decode == pytest.approx(2.0)
    rows = devices.throughput_projection([("m", 10**9, 10**9, lambda b: b * 10**9)], unit, 10, 3, (1, 2, 4))
    assert rows[2].startswith("| m | 1 | 2.0 | yes |") and rows[3].startswith("| m | 2 | 3.0 | yes |")
    assert rows[4] == "| m | 4 | 5.0 | no | n/a | n/a |"  # 5 GB of weights and cache in a 3 GB device


def test_measured_need_decides_which_batches_fit_another_device():
    """The bytes a batch needed where it ran (weights, what the backend held, the call's extra peak) decide
    whether it fits the projected device -- not weights and cache alone, which leave the activations out; a
    batch out of memory where it ran says so and is never counted as fitting."""
    from ssmbench.point import Point

    def tp(batch, extra_gb, held_gb=0.0, status="ok"):
        return Point.from_json({
            "kind": "throughput", "status": status, "model": "m", "backend": "eager", "context": 10, "batch": batch,
            "params": 10**9, "new_tokens": 3, "weight_bytes": 10**9, "cache_bytes": 10**6,
            "extra_peak_bytes": int(extra_gb * 1e9), "backend_held_bytes": int(held_gb * 1e9),
            "tokens_per_s": 10.0 * batch})

    unit = devices.DeviceProfile("unit", "unit", (), 3, 1, 1)
    rows = devices.measured_fit_projection([tp(1, 0.5), tp(2, 1.0, held_gb=0.5), tp(4, 1.5), tp(8, 0, status="oom")],
                                           unit, headroom=0.1)
    assert rows[2].startswith("| m | eager | 10 | 1 | 1.5 | yes | 10 |")
    assert rows[3].startswith("| m | eager | 10 | 2 | 2.5 | yes | 20 |")  # the backend's held bytes count
    assert rows[4] == "| m | eager | 10 | 4 | 2.5 | yes | 40 | " + rows[4].split(" | ")[-1]
    assert rows[5] == "| m | eager | 10 | 8 | oom there | | | |"
    assert rows[-1] == "| m | eager | 10 | 4 | - |"
    small = devices.DeviceProfile("small", "small", (), 2.6, 1, 1)  # 2.5 GB: past the 15 % headroom, not past 2.6
    rows = devices.measured_fit_projection([tp(1, 0.5), tp(2, 1.5), tp(4, 2.0)], small)
    assert rows[3].startswith("| m | eager | 10 | 2 | 2.5 | borderline | 20 |")
    assert rows[4] == "| m | eager | 10 | 4 | 3.0 | no | 40 | n/a |" and rows[-1] == "| m | eager | 10 | 1 | 2 |"
