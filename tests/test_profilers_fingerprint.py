"""Device fingerprint: complete, stable, and sensitive to what changes latency."""
from __future__ import annotations

import re

from profilers.fingerprint import device_fingerprint, fingerprint_hash, host_info
from profilers.runner import get_backend


def test_host_info_fields():
    info = host_info()
    for field in ("cpu", "logical_cores", "physical_cores", "os", "python", "torch", "numpy", "gpu"):
        assert field in info
    assert info["cpu"] and info["logical_cores"] >= 1


def test_hash_is_stable_and_canonical():
    a = {"cpu": "x", "threads": 1, "runtime": {"a": "1", "b": "2"}}
    b = {"runtime": {"b": "2", "a": "1"}, "threads": 1, "cpu": "x"}
    assert fingerprint_hash(a) == fingerprint_hash(b)
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint_hash(a))
    assert fingerprint_hash({**a, "threads": 2}) != fingerprint_hash(a)


def test_device_fingerprint_repeatable_and_per_backend_and_threads():
    ort = get_backend("onnxruntime")
    h1, info1 = device_fingerprint(ort, 1)
    h2, info2 = device_fingerprint(get_backend("onnxruntime"), 1)
    assert (h1, info1) == (h2, info2)
    assert info1["runtime"]["onnxruntime"] and info1["threads"] == 1 and info1["backend"] == "onnxruntime"
    assert device_fingerprint(ort, 2)[0] != h1
    assert device_fingerprint(get_backend("torch-cpu"), 1)[0] != h1


def test_remote_style_backend_describes_its_own_device():
    class Far:
        name = "far"

        def versions(self):
            return {"rt": "9"}

        def device_info(self):
            return {"cpu": "Cortex-A76", "gpu": ""}

    h, info = device_fingerprint(Far(), 4)
    assert info["cpu"] == "Cortex-A76" and info["runtime"] == {"rt": "9"} and info["threads"] == 4
    assert h == fingerprint_hash(info)
