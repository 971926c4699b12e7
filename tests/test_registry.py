"""Backend registry and selection."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

import dlaccel
from dlaccel import backends
from dlaccel.backends.numpy_backend import NumpyBackend


def test_available_backends_lists_every_known_backend():
    info = dlaccel.available_backends()
    assert list(info)[:4] == ["loops", "numpy", "numba", "cupy"]
    for name, entry in info.items():
        assert set(entry) == {"available", "reason"}
        assert entry["available"] is (entry["reason"] is None), name
    assert info["numpy"]["available"] and info["loops"]["available"]


def test_get_backend_returns_named_shared_instances():
    assert dlaccel.get_backend("numpy").name == "numpy"
    assert dlaccel.get_backend("NumPy") is dlaccel.get_backend("numpy")
    assert dlaccel.get_backend("loops").name == "loops"
    be = dlaccel.get_backend("numpy")
    assert dlaccel.get_backend(be) is be


def test_unknown_backend_lists_known_names():
    with pytest.raises(dlaccel.UnknownBackendError) as info:
        dlaccel.get_backend("tensorflow")
    assert isinstance(info.value, ValueError) and isinstance(info.value, dlaccel.DlaccelError)
    for name in ("loops", "numpy", "numba", "cupy", "auto"):
        assert name in str(info.value)


def test_unavailable_backend_raises_with_reason(monkeypatch):
    monkeypatch.setitem(backends._PROBES, "cupy", lambda: "no CUDA device found")
    monkeypatch.delitem(backends._instances, "cupy", raising=False)
    with pytest.raises(dlaccel.BackendUnavailableError, match="no CUDA device found") as info:
        dlaccel.get_backend("cupy")
    assert isinstance(info.value, RuntimeError)


def test_auto_picks_the_fastest_available(monkeypatch):
    monkeypatch.setitem(backends._PROBES, "cupy", lambda: "no device")
    monkeypatch.setitem(backends._PROBES, "numba", lambda: "not installed")
    assert dlaccel.get_backend("auto").name == "numpy"


def test_auto_prefers_numba_over_numpy_when_available(monkeypatch):
    monkeypatch.setitem(backends._PROBES, "cupy", lambda: "no device")
    if dlaccel.available_backends()["numba"]["available"]:
        assert dlaccel.get_backend("auto").name == "numba"
    monkeypatch.setitem(backends._PROBES, "cupy", lambda: None)
    monkeypatch.setattr(backends, "_load_class", lambda name: EchoBackend)
    assert backends._resolve_name("auto") == "cupy"  # the first in the order wins when usable


def test_selection_order(monkeypatch):
    monkeypatch.setenv("DLACCEL_BACKEND", "loops")
    monkeypatch.setattr(backends, "_global_choice", None)
    assert dlaccel.get_backend().name == "loops"
    dlaccel.set_backend("numpy")
    try:
        assert dlaccel.get_backend().name == "numpy"
        with dlaccel.use_backend("loops") as be:
            assert be.name == "loops" and dlaccel.get_backend().name == "loops"
            assert dlaccel.get_backend("numpy").name == "numpy"  # an explicit argument wins
            assert dlaccel.DeepNN([2, 1]).backend.name == "loops"
        assert dlaccel.get_backend().name == "numpy"
    finally:
        dlaccel.set_backend(None)
    assert dlaccel.get_backend().name == "loops"
    monkeypatch.delenv("DLACCEL_BACKEND")
    assert dlaccel.get_backend().name == "numpy"


def test_bad_environment_variable_names_the_variable_value(monkeypatch):
    monkeypatch.setenv("DLACCEL_BACKEND", "nope")
    with pytest.raises(dlaccel.UnknownBackendError, match="nope"):
        dlaccel.get_backend()


def test_a_choice_from_the_environment_says_so_when_it_fails(monkeypatch):
    monkeypatch.setattr(backends, "_global_choice", None)
    monkeypatch.setitem(backends._PROBES, "cupy", lambda: "no CUDA device found")
    monkeypatch.delitem(backends._instances, "cupy", raising=False)
    monkeypatch.setenv("DLACCEL_BACKEND", "cupy")
    with pytest.raises(dlaccel.BackendUnavailableError, match="no CUDA device found.*DLACCEL_BACKEND environment"):
        dlaccel.get_backend()
    monkeypatch.setenv("DLACCEL_BACKEND", "nope")
    with pytest.raises(dlaccel.UnknownBackendError, match="known backends.*DLACCEL_BACKEND environment"):
        dlaccel.get_backend()
    # A name passed in says nothing about the environment: the caller knows where it came from.
    with pytest.raises(dlaccel.BackendUnavailableError) as info:
        dlaccel.get_backend("cupy")
    assert "DLACCEL_BACKEND" not in str(info.value)


def test_set_backend_fails_fast_on_unknown_names():
    with pytest.raises(dlaccel.UnknownBackendError):
        dlaccel.set_backend("nope")
    assert dlaccel.get_backend().name in backends.REGISTRY


def test_use_backend_is_local_to_the_thread():
    seen = {}
    inside = threading.Event()
    done = threading.Event()

    def other():
        inside.wait()
        seen["other"] = dlaccel.get_backend().name
        done.set()

    t = threading.Thread(target=other)
    t.start()
    with dlaccel.use_backend("loops"):
        inside.set()
        done.wait(10)
    t.join()
    assert seen["other"] != "loops"


class EchoBackend(NumpyBackend):
    name = "echo"


class MissingBackend(NumpyBackend):
    name = "missing"

    @classmethod
    def unavailable_reason(cls):
        return "needs the echo accelerator"


def test_third_party_backends_register_through_entry_points(monkeypatch):
    class EP:
        def __init__(self, name, value):
            self.name, self.value = name, value

    def fake_entry_points(group):
        assert group == "dlaccel.backends"
        return [EP("echo", f"{__name__}:EchoBackend"), EP("missing", f"{__name__}:MissingBackend")]

    monkeypatch.setattr("importlib.metadata.entry_points", fake_entry_points)
    monkeypatch.setattr(backends, "_entry_points_loaded", False)
    monkeypatch.setattr(backends, "REGISTRY", dict(backends.REGISTRY))
    monkeypatch.setattr(backends, "_instances", {})
    info = dlaccel.available_backends()
    assert info["echo"] == {"available": True, "reason": None}
    assert info["missing"] == {"available": False, "reason": "needs the echo accelerator"}
    assert dlaccel.get_backend("echo").name == "echo"
    with pytest.raises(dlaccel.BackendUnavailableError, match="echo accelerator"):
        dlaccel.get_backend("missing")


def test_import_does_not_import_numba_or_cupy():
    code = "import sys, dlaccel; dlaccel.get_backend('numpy'); print('numba' in sys.modules, 'cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
