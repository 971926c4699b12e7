"""benchmarks/gpu_check.py, dry-run on the CPU: its GPU sections driven through the kernel emulator
and a NumPy stand-in for CuPy, so the script that spends scarce device time is known to run and to
report what it found. Its numbers here mean nothing; its logic does. (The checks that catch a wrong
kernel are tests/test_cupy.py's, which its tests section runs on the GPU.)"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dlaccel
from dlaccel import backends
from dlaccel.backends import cupy_gpu
from dlaccel.backends._cuda import KERNEL_FILES, kernel_names
from dlaccel.backends.cupy_gpu import CupyBackend

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def dry_run(monkeypatch, emulated, gpu_check):
    """gpu_check with the emulated backend registered as "cupy" and usable, its bench rows timed in
    this process (bench's children would not have the emulator)."""
    monkeypatch.setitem(sys.modules, "cupy", cupy_gpu.cupy)  # the stand-in that `emulated` installed
    monkeypatch.setitem(backends._PROBES, "cupy", lambda: None)
    monkeypatch.setattr(backends._probe, "cupy", lambda: None)  # sysinfo.gpus asks it directly
    monkeypatch.setattr(CupyBackend, "unavailable_reason", classmethod(lambda cls: None))
    monkeypatch.setitem(backends._instances, "cupy", emulated)
    monkeypatch.setattr(gpu_check, "ISOLATE", False)
    return gpu_check


def run_section(gpu_check, name: str, **kwargs) -> dict:
    rec = gpu_check.Record(None)
    gpu_check.SECTIONS[name](rec, True, **kwargs)
    return {**rec, "status": "ok"}


def test_every_gpu_section_runs_and_passes_on_the_emulator(dry_run, monkeypatch, tmp_path):
    results = {name: run_section(dry_run, name) for name in ("env", "kernels", "training")}
    monkeypatch.setenv("CUPY_CACHE_DIR", str(tmp_path))
    results["coldstart_cold"] = run_section(dry_run, "coldstart")
    (tmp_path / "compiled.cubin").write_bytes(b"")
    results["coldstart_warm"] = run_section(dry_run, "coldstart")
    for name, data in results.items():
        assert data["errors"] == [] and data["failed"] == [], name

    assert results["env"]["cupy_available"] is True
    env = results["env"]
    assert (env["device"], env["sms"], env["compute_capability"]) == ("CPU emulator", 2, "0.0")
    timed = results["kernels"]["report"]["results"]
    assert [(r["workload"], r["backend"]) for r in timed] == [
        (w, b) for w in dry_run.KERNEL_ROWS for b in ("cupy", "cupy-unfused")]
    assert all(r["check"]["passed"] and r["median_s"] > 0 and r["share_of_limit"] > 0 for r in timed)

    (step,) = results["training"]["items"]
    assert step["net"] == "8x4x4x3" and step["cupy"]["check"]["passed"] and step["cupy"]["median_s"] > 0
    assert step["cupy"]["check"]["max_rel_error"] is not None and step["floor_s"] > 0

    assert results["coldstart_cold"]["kernels"] == sum(len(kernel_names(f)) for f in KERNEL_FILES)
    assert (results["coldstart_cold"]["cache"], results["coldstart_warm"]["cache"]) == ("empty", "filled")

    table = dry_run.table(results)
    assert "GPU CHECK NOT RUN" not in table
    assert all(name in table for name in dry_run.KERNEL_ROWS)
    assert "8x4x4x3 m=64" in table and "kernel first use, empty CuPy disk cache" in table
    print(table)
    assert dry_run.verdict(results) == (0, [])


def test_dask_cuda_section_is_skipped_without_dask_cuda(dry_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_cuda", None)  # import dask_cuda raises ImportError
    results = {"env": {"status": "ok", "cupy_available": True}, "dask-cuda": run_section(dry_run, "dask-cuda")}
    assert "dask_cuda" in results["dask-cuda"]["skipped"] and results["dask-cuda"]["errors"] == []
    assert dry_run.verdict(results) == (0, [])
    assert "dask-cuda: skipped: dask_cuda is not importable" in dry_run.table(results)


def test_dask_cuda_section_compares_a_cluster_fit_on_the_emulator(dry_run):
    distributed = pytest.importorskip("distributed")

    def cluster():  # threads in this process: its workers see the emulated backend
        return distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0")

    result = run_section(dry_run, "dask-cuda", make_cluster=cluster)
    assert result["errors"] == [] and result["failed"] == []
    assert result["workers"] == 1 and result["check"]["passed"] and result["check"]["max_rel_error"] <= 1e-4
    assert set(result["s_per_iteration"]) == {"in-process", "dask-cuda"}
    assert result["shards_on_gpu"] == [True] * 4
    assert "dask-cuda: 1 GPU worker(s)" in dry_run.table({"dask-cuda": result})


def test_dask_cuda_section_fails_when_the_cluster_fit_differs(dry_run, monkeypatch):
    distributed = pytest.importorskip("distributed")
    from dlaccel import distributed as dist_mod

    real = dist_mod.Group.sums

    def skewed(self, params, with_cost):
        cost, sums = real(self, params, with_cost)
        return cost, {k: g * 1.01 for k, g in sums.items()}

    def cluster():
        return distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0")

    monkeypatch.setattr(dist_mod.Group, "sums", skewed)
    result = run_section(dry_run, "dask-cuda", make_cluster=cluster)
    assert result["failed"] and "dask-cuda fit vs in-process" in result["failed"][0]
    assert dry_run.verdict({"env": {"status": "ok", "cupy_available": True}, "dask-cuda": result})[0] == 1


def test_verdict(gpu_check):
    ok = {"status": "ok"}
    gpu = {"env": {**ok, "cupy_available": True}}
    assert gpu_check.verdict(gpu) == (0, [])
    assert gpu_check.verdict({"env": {**ok, "cupy_available": False}}) == (2, [])
    assert gpu_check.verdict({**gpu, "kernels": {"status": "timed out after 90 s"}}) == (1, ["kernels"])
    assert gpu_check.verdict({**gpu, "tests": {**ok, "failed": ["FAILED tests/test_cupy.py::x"]}}) == (1, ["tests"])
    assert gpu_check.verdict({**gpu, "dask-cuda": {**ok, "skipped": "no dask_cuda"}}) == (0, [])


def test_bench_children_rebuild_the_scripts_backends_by_name(gpu_check, monkeypatch):
    """The script's rows run in bench's children as gpu_check:<Class>: the child imports the script
    (and so its kernel setup) and builds the class; here without CuPy the row then fails inside."""
    from dlaccel.bench import isolation

    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # as when the script runs: its directory on the path
    assert isolation.target_spec(gpu_check.UnfusedCupy()) == {"class": "gpu_check:UnfusedCupy"}
    outcome = isolation.run_in_child(gpu_check.UnfusedCupy(), ["dot"], "tiny", "float32", 1, 0.0, 1, 120, print)
    (row,) = outcome.rows
    assert row.backend == "cupy-unfused" and row.workload == "dot"
    assert "could not be set up" not in (row.error or ""), row.error


def test_without_a_gpu_the_script_says_so_and_exits_2(tmp_path):
    if dlaccel.available_backends()["cupy"]["available"]:
        pytest.skip("a GPU is present: the real check is run with benchmarks/gpu_check.py itself")
    env = {k: v for k, v in os.environ.items() if k != "DLACCEL_BACKEND"}
    proc = subprocess.run([sys.executable, str(SCRIPT)], env={**env, "OUT": str(tmp_path)}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "GPU CHECK NOT RUN" in proc.stdout
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["env"]["cupy_available"] is False and report["env"]["cupy_reason"]
    assert report["env"]["numpy"] == np.__version__


def test_tests_section_runs_pytest_and_reads_its_summary(gpu_check, monkeypatch, tmp_path):
    """The tests section on CPU, with one quick test selected instead of the GPU ones."""
    paths = [str(SCRIPT.parent), str(SCRIPT.parents[1]), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))  # for pytest's -p gpu_check
    monkeypatch.setenv("OUT", str(tmp_path))
    monkeypatch.setattr(gpu_check, "TESTS", "test_verdict")
    result = run_section(gpu_check, "tests")
    assert result["counts"]["passed"] == 1 and result["failed"] == [] and result["errors"] == []
    assert "1 passed" in (tmp_path / "pytest.log").read_text()
    assert "pytest (gpu/cupy): {'passed': 1" in gpu_check.table({"tests": result})
    monkeypatch.setattr(gpu_check, "TESTS", "no_test_has_this_name")  # nothing run is not a pass
    assert run_section(gpu_check, "tests")["errors"] == ["pytest exited with 5"]
