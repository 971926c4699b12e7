"""The dlaccel command, run in-process with click's CliRunner at tiny sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("click")
pytest.importorskip("rich")
from click.testing import CliRunner  # noqa: E402

import dlaccel  # noqa: E402
from dlaccel.backends import REGISTRY  # noqa: E402
from dlaccel.backends.numpy_backend import NumpyBackend  # noqa: E402
from dlaccel.cli import load_app, main  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY = ["bench", "--profile", "tiny"]


@pytest.fixture
def cli():
    return load_app()


@pytest.fixture
def invoke(cli):
    def run(*args):
        return CliRunner().invoke(cli, list(args))

    return run


@pytest.fixture
def no_run(monkeypatch):
    """Fails the test if the benchmark starts."""
    from dlaccel.cli import bench

    calls = []
    monkeypatch.setattr(bench, "run", lambda *a, **k: calls.append(a) or pytest.fail("the benchmark ran"))
    return calls


def assert_one_line_error(result, *fragments):
    # CliRunner catches everything: an uncaught exception shows up here, not as a printed traceback.
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    import matplotlib.image

    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


@pytest.mark.parametrize("command", [[], ["info"], ["bench"], ["train"]])
def test_help(invoke, command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_info_lists_every_backend_with_its_state(invoke):
    result = invoke("info")
    assert result.exit_code == 0, result.output
    for name in REGISTRY:
        assert name in result.output
    assert "numpy" in result.output and "CPU:" in result.output


def test_info_json(invoke):
    result = invoke("info", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert set(data["backends"]) == set(REGISTRY)
    assert data["versions"]["numpy"] == np.__version__
    assert data["cpu"]["logical_cores"] >= 1


def test_info_names_each_gpu_cupy_sees(invoke, monkeypatch):
    import types

    from dlaccel.backends import _probe

    props = {"name": b"NVIDIA H100 80GB HBM3", "totalGlobalMem": 80 * 2**30, "multiProcessorCount": 132,
             "major": 9, "minor": 0}
    runtime = types.SimpleNamespace(getDeviceCount=lambda: 1, getDeviceProperties=lambda i: props)
    monkeypatch.setattr(_probe, "cupy", lambda: None)
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime)))
    result = invoke("info")
    assert result.exit_code == 0, result.output
    assert "GPU 0: NVIDIA H100 80GB HBM3, 80.0 GiB, compute capability 9.0, 132 SMs (via cupy)" in result.output


def test_info_survives_a_broken_cupy(invoke, monkeypatch):
    from dlaccel import sysinfo
    from dlaccel.backends import _probe

    class BrokenRuntime:
        @staticmethod
        def getDeviceCount():
            raise RuntimeError("driver exploded")

    class FakeCupy:
        class cuda:
            runtime = BrokenRuntime

    monkeypatch.setattr(_probe, "cupy", lambda: None)  # the probe says fine, the device query fails
    monkeypatch.setitem(sys.modules, "cupy", FakeCupy)
    monkeypatch.setattr(sysinfo.shutil, "which", lambda name: None)
    gpus, reason = sysinfo.gpus()
    assert gpus == [] and "driver exploded" in reason
    result = invoke("info")
    assert result.exit_code == 0
    assert "driver exploded" in result.output


def test_bench_writes_table_json_and_png(invoke, tmp_path):
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    result = invoke(*TINY, "--backends", "loops,numpy", "--workloads", "dot,logreg,dispatch",
                    "--json", str(out), "--plot", str(png))
    assert result.exit_code == 0, result.output
    for word in ("dot", "logreg", "dispatch", "loops", "numpy", "GEMM", "copy", "scaled linearly: logreg from m="):
        assert word in result.stdout
    report = json.loads(out.read_text())
    assert report["schema"] == "dlaccel-bench/1"
    assert {(r["workload"], r["backend"]) for r in report["results"]} == {
        (w, b) for w in ("dot", "logreg", "dispatch") for b in ("loops", "numpy")}
    for row in report["results"]:
        assert row["check"]["passed"] and row["median_s"] > 0
    assert report["system"]["thread_pools"] or report["system"]["thread_pools_reason"]
    assert_png(png)


def test_bench_unknown_backend(invoke, no_run):
    result = invoke(*TINY, "--backends", "numpy,fortran")
    assert_one_line_error(result, "fortran", "known backends")


def test_bench_unknown_workload(invoke, no_run):
    result = invoke(*TINY, "--workloads", "dot,matmul")
    assert_one_line_error(result, "matmul", "known workloads")


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_bench_unwritable_paths_fail_before_running(invoke, no_run, tmp_path, option):
    missing = tmp_path / "no" / "such" / "folder" / "out"
    assert_one_line_error(invoke(*TINY, option, str(missing)), option, "does not exist")
    assert_one_line_error(invoke(*TINY, option, str(tmp_path)), option, "is a directory")
    assert no_run == []


def test_bench_plot_without_matplotlib_fails_before_running(invoke, no_run, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert_one_line_error(invoke(*TINY, "--plot", str(tmp_path / "x.png")), "dlaccel[plot]")


def test_ctrl_c_in_a_command_exits_130_saying_so(invoke, monkeypatch, tmp_path):
    from dlaccel.cli import bench

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "run", interrupted)
    result = invoke(*TINY, "-b", "numpy", "-w", "dot", "--json", str(tmp_path / "r.json"))
    assert result.exit_code == 130 and "interrupted" in result.output and "Aborted" not in result.output
    assert not (tmp_path / "r.json").exists()


def test_bench_table_and_json_survive_a_failing_plot(invoke, monkeypatch, tmp_path):
    from dlaccel.bench import report

    def broken(*args):
        raise OSError("No space left on device")

    monkeypatch.setattr(report, "plot_speedups", broken)
    out = tmp_path / "bench.json"
    result = invoke(*TINY, "--backends", "numpy", "--workloads", "dot", "--json", str(out),
                    "--plot", str(tmp_path / "x.png"))
    assert_one_line_error(result, "No space left on device")
    assert "dlaccel bench" in result.stdout and "numpy" in result.stdout
    assert json.loads(out.read_text())["results"][0]["backend"] == "numpy"


def test_bench_without_torch_prints_a_note(invoke, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    result = invoke(*TINY, "--backends", "numpy,torch", "--workloads", "dot")
    assert result.exit_code == 0, result.output
    assert "PyTorch is not installed" in result.stdout


def test_bench_reports_a_failed_check_and_exits_nonzero(invoke, monkeypatch):
    from dlaccel.backends import numpy_backend

    monkeypatch.setattr(numpy_backend.NumpyBackend, "activation_forward",
                        lambda self, Z, activation: Z.copy())
    # In-process, so that the patched backend is the one timed (a child would import the real one).
    result = invoke(*TINY, "--in-process", "--backends", "loops,numpy", "--workloads", "relu_fwd")
    assert_one_line_error(result, "1 row(s) failed")
    assert "FAILED relu_fwd on loops: check failed" in result.stdout
    assert "isolation: none (--in-process)" in result.stdout


def test_bench_times_each_backend_in_its_own_process(invoke, tmp_path):
    out = tmp_path / "bench.json"
    result = invoke(*TINY, "--backends", "numpy,loops", "--workloads", "dot", "--json", str(out))
    assert result.exit_code == 0, result.output
    assert "isolation: each backend timed in a fresh process" in result.stdout
    report = json.loads(out.read_text())
    assert report["isolation"]["mode"] == "process"
    pids = {r["backend"]: r["pid"] for r in report["results"]}
    assert set(pids) == {"numpy", "loops"} and len(set(pids.values())) == 2
    assert os.getpid() not in pids.values()
    assert {b: w["pid"] for b, w in report["isolation"]["workers"].items()} == pids


def test_bench_times_a_backend_named_twice_once(invoke, tmp_path):
    out = tmp_path / "bench.json"
    result = invoke(*TINY, "--in-process", "--backends", "numpy,numpy", "--workloads", "dot", "--json", str(out))
    assert result.exit_code == 0, result.output
    assert [(r["workload"], r["backend"]) for r in json.loads(out.read_text())["results"]] == [("dot", "numpy")]


@pytest.mark.parametrize("mode", [[], ["--in-process"]])
def test_bench_with_only_the_missing_peer_fails(invoke, monkeypatch, mode):
    monkeypatch.setitem(sys.modules, "torch", None)
    result = invoke(*TINY, *mode, "--backends", "torch", "--workloads", "dot")
    assert_one_line_error(result, "nothing to benchmark", "PyTorch is not installed")


def _savefig_that_fails_midway(monkeypatch):
    from matplotlib.figure import Figure

    def savefig(self, f, **kwargs):
        if isinstance(f, (str, os.PathLike)):
            with open(f, "wb") as out:
                out.write(PNG_SIGNATURE)  # a partial file, then the renderer fails
        else:
            f.write(PNG_SIGNATURE)
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr(Figure, "savefig", savefig)


def test_bench_chart_failing_midway_leaves_no_partial_file(invoke, monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    _savefig_that_fails_midway(monkeypatch)
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    result = invoke(*TINY, "--backends", "numpy", "--workloads", "dot", "--json", str(out), "--plot", str(png))
    assert_one_line_error(result, "renderer exploded", str(png))
    assert "dlaccel bench" in result.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # no chart, no temporary file
    assert json.loads(out.read_text())["results"][0]["backend"] == "numpy"


def test_bench_timeout_option_is_checked(invoke, no_run):
    result = invoke(*TINY, "--timeout", "0")
    assert result.exit_code != 0 and "--timeout" in result.output


def test_train_planar_writes_model_and_plot(invoke, tmp_path):
    model_path, png = tmp_path / "flower.npz", tmp_path / "flower.png"
    result = invoke("train", "--dataset", "planar", "--model", "shallow", "--iterations", "30", "--no-progress",
                    "--save", str(model_path), "--plot", str(png))
    assert result.exit_code == 0, result.output
    assert "train accuracy" in result.stdout and "test accuracy" in result.stdout
    model = dlaccel.load(model_path)
    assert isinstance(model, dlaccel.ShallowNN)
    assert model.layer_dims == [2, 4, 1] and model.iteration == 30
    X, Y = dlaccel.datasets.planar()
    assert model.predict(X).shape == Y.shape
    assert_png(png)


@pytest.mark.parametrize("model, extra", [("logistic", []), ("deep", ["--layers", "5,3"])])
def test_train_other_models(invoke, model, extra):
    result = invoke("train", "--dataset", "blobs", "--model", model, *extra, "--iterations", "5",
                    "--test-split", "0.25")
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.stdout


def test_train_on_gaussian_quantiles(invoke):
    result = invoke("train", "--dataset", "gaussian_quantiles", "--model", "logistic", "--iterations", "2")
    assert result.exit_code == 0, result.output


def test_train_plot_failing_midway_leaves_no_partial_file(invoke, monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    _savefig_that_fails_midway(monkeypatch)
    png = tmp_path / "flower.png"
    result = invoke("train", "--iterations", "3", "--no-progress", "--plot", str(png))
    assert_one_line_error(result, "renderer exploded", str(png))
    assert "train accuracy" in result.stdout  # the results came first
    assert list(tmp_path.iterdir()) == []  # no plot, no temporary file


@pytest.mark.parametrize("args, fragment", [
    (["--backend", "fortran"], "known backends"),
    (["--learning-rate", "-1"], "learning_rate"),
    (["--save", "/no/such/folder/m.npz"], "does not exist"),
    (["--model", "deep", "--layers", "0"], "--layers"),
])
def test_train_checks_every_argument_before_loading_data(invoke, monkeypatch, args, fragment):
    from dlaccel import datasets

    def loaded():
        pytest.fail("the data set was loaded")

    monkeypatch.setattr(datasets, "digits", loaded)
    monkeypatch.setitem(datasets.LOADERS, "digits", loaded)
    assert_one_line_error(invoke("train", "--dataset", "digits", "--iterations", "1", *args), fragment)


def test_train_digits_without_sklearn(invoke, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert_one_line_error(invoke("train", "--dataset", "digits", "--iterations", "1"), "dlaccel[datasets]")


@pytest.mark.parametrize("args, fragment", [
    (["--backend", "fortran"], "known backends"),
    (["--model", "deep", "--layers", "20,x"], "--layers"),
    (["--save", "/no/such/folder/m.npz"], "does not exist"),
    (["--learning-rate", "-1"], "learning_rate"),
])
def test_train_errors_are_one_line(invoke, args, fragment):
    assert_one_line_error(invoke("train", "--iterations", "2", *args), fragment)


def test_missing_cli_extra_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "click", None)
    monkeypatch.delitem(sys.modules, "dlaccel.cli.app", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["info"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'dlaccel[cli]'" in err[0]


def test_python_dash_m_runs_the_same_command():
    result = subprocess.run([sys.executable, "-m", "dlaccel", "--version"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    assert dlaccel.__version__ in result.stdout


def test_the_installed_version_is_the_packages():
    from importlib import metadata

    try:
        installed = metadata.version("dlaccel")
    except metadata.PackageNotFoundError:
        pytest.skip("dlaccel is not installed (run from a source checkout)")
    assert installed == dlaccel.__version__


# -- messages through rich are printed as written, never read as console markup ------------------

BRACKETED = "CuPy is not installed (pip install 'dlaccel[cuda12]' or 'dlaccel[cuda13]')"


def test_info_prints_brackets_in_reasons_as_written(invoke, monkeypatch):
    from dlaccel.backends import _probe

    monkeypatch.setattr(_probe, "cupy", lambda: BRACKETED)
    result = invoke("info")
    assert result.exit_code == 0, result.output
    assert "'dlaccel[cuda12]' or 'dlaccel[cuda13]'" in result.output



def test_train_names_the_environment_variable_behind_an_unavailable_backend(invoke, monkeypatch):
    from dlaccel import backends

    monkeypatch.setattr(backends, "_global_choice", None)
    monkeypatch.setitem(backends._PROBES, "cupy", lambda: "no CUDA device found")
    monkeypatch.delitem(backends._instances, "cupy", raising=False)
    monkeypatch.setenv("DLACCEL_BACKEND", "cupy")
    result = invoke("train", "--iterations", "1", "--no-progress")
    assert_one_line_error(result, "'cupy' is not available", "no CUDA device found",
                          "DLACCEL_BACKEND environment variable")
    assert result.exit_code == 1


@pytest.mark.parametrize("args, option", [
    (["--model", "shallow", "--layers", "5,3"], "--layers"),
    (["--model", "logistic", "--layers", "5,3"], "--layers"),
    (["--model", "deep", "--hidden-units", "8"], "--hidden-units"),
    (["--model", "logistic", "--hidden-units", "8"], "--hidden-units"),
])
def test_train_refuses_options_the_model_does_not_use(invoke, monkeypatch, args, option):
    from dlaccel import training

    monkeypatch.setattr(training, "load_dataset", lambda name: pytest.fail("the data set was loaded"))
    result = invoke("train", "--iterations", "1", "--no-progress", *args)
    assert_one_line_error(result, option, "applies only to --model")
    assert result.exit_code == 1


def test_train_accepts_each_models_own_option(invoke):
    for args in (["--model", "deep", "--layers", "3"], ["--model", "shallow", "--hidden-units", "3"]):
        result = invoke("train", "--dataset", "blobs", "--iterations", "1", "--no-progress", *args)
        assert result.exit_code == 0, result.output


def test_a_typo_in_a_choice_is_a_usage_error_as_the_readme_says(invoke):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "exit status 2" in readme and "`--dataset plannar`" in readme
    result = invoke("train", "--dataset", "plannar")
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("Usage: ") and lines[1].startswith("Try ") and "--help" in lines[1]
    assert len(lines) == 3 and lines[2].startswith("Error:")
    assert "--dataset" in lines[2] and "'plannar'" in lines[2] and "'planar'" in lines[2]


def test_bench_prints_brackets_in_notes_and_errors_as_written():
    text = _render(_fake_report(notes=[BRACKETED], error="check failed: [red]bad[/red] output"), 200)
    assert BRACKETED in text and "check failed: [red]bad[/red] output" in text


# -- the bench table -------------------------------------------------------------------------------


def _fake_report(notes=(), error="check failed: differs from NumPy: max elementwise error 2.00e-01 > 1.0e-03"):
    """A report with the widest cells a real run prints (long names, tiny ratios, GFLOP/s rates,
    an extrapolated loops row and a failed row), to lay the table out without running anything."""
    workloads = {"deep_course": "[12288,20,7,5,1] m=2048", "sigmoid_bwd": "4096x4096", "dispatch": "8x8"}
    results = []
    for w in workloads:
        for backend, median in (("loops", 802.0), ("numpy", 0.342), ("numba", 1.5e-6), ("torch", 0.0123)):
            unit = "overhead" if w == "dispatch" else ("flop" if w == "deep_course" else "byte")
            row = {"workload": w, "backend": backend, "unit": unit, "size": {"m": 2048},
                   "measured_size": {"m": 4 if backend == "loops" else 2048},
                   "extrapolation": 512.0 if backend == "loops" and unit == "flop" else 1.0, "first_call_s": 914.0,
                   "median_s": median, "q1_s": median * 0.99, "q3_s": median * 1.01,
                   "speedup_vs_loops": None if unit == "overhead" else 802.0 / median / 1000,
                   "speedup_vs_numpy": None if unit == "overhead" else 0.342 / median / 1e6,
                   "rate": None if unit == "overhead" else 0.0122 / median,
                   "rate_unit": {"flop": "GFLOP/s", "byte": "GB/s"}.get(unit),
                   "share_of_limit": None if unit == "overhead" else 0.0000538 / median,
                   "overhead_us": 13.37 if unit == "overhead" else None, "error": None}
            results.append(row)
    results[5].update(error=error, median_s=None, q1_s=None, speedup_vs_loops=None, speedup_vs_numpy=None,
                      rate=None, share_of_limit=None)
    return {
        "dtype": "float32", "profile": "full", "threads": 2, "wall_s": 108.3, "notes": list(notes),
        "system": {"cpu": {"model": "AMD EPYC 7763 64-Core Processor", "usable_cores": 2},
                   "thread_pools": [{"api": "blas", "library": "openblas", "version": "0.3.31.188.0",
                                     "kernel": "SkylakeX", "threads": 2}]},
        "limits": {"host": {"gemm_gflops": 95.4, "dtype": "float32", "gemm_n": 2048, "copy_gbps": 22.1}},
        "peer": {"available": True, "version": "2.13.0+cpu", "threads": 2},
        "isolation": {"mode": "process"},
        "workloads": {w: {"describe": d} for w, d in workloads.items()},
        "results": results,
    }


def _table_lines(text, report):
    pairs = {(r["workload"], r["backend"]) for r in report["results"]}
    return [line for line in text.splitlines() if tuple(line.split()[:2]) in pairs]


def _render(report, width, wide=False):
    from rich.console import Console

    from dlaccel.cli.bench import show_bench

    console = Console(width=width, record=True, file=open(os.devnull, "w"), markup=False)
    show_bench(report, console, wide)
    return console.export_text()


def test_bench_table_fits_80_columns_without_breaking_a_token():
    from dlaccel.bench import report as rep

    report = _fake_report()
    text = _render(report, 80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    header = next(line for line in lines if line.split()[:2] == ["workload", "backend"])
    assert header.split("  ") and all(column in header for column in rep.NARROW)
    table_rows = _table_lines(text, report)
    cells = rep.narrow_rows(report)
    assert len(table_rows) == len(cells)
    for line, row in zip(table_rows, cells):
        for cell in row:  # each cell whole, on its row's one line
            assert cell in line, (cell, line)
    assert "FAILED" in cells[5]
    # What the narrow table leaves out is still said, whole words only.
    words = set(text.split())
    assert {"[12288,20,7,5,1]", "m=2048;", "FAILED", "m=4"} <= words
    assert set(report["results"][5]["error"].split()) <= words


def test_bench_wide_table_has_every_column():
    from dlaccel.bench import report as rep

    report = _fake_report()
    text = _render(report, 250, wide=True)
    header = next(line for line in text.splitlines() if line.split()[:2] == ["workload", "backend"])
    assert all(column in header for column in rep.COLUMNS)
    for line, row in zip(_table_lines(text, report), rep.rows(report)):
        assert all(cell in line for cell in row if cell)


def test_bench_says_which_rows_beat_the_copy_limit():
    from dlaccel.bench import report as rep

    report = _fake_report()
    row = {(r["workload"], r["backend"]): r for r in report["results"]}
    # The fake's numba rows beat every limit; sigmoid_bwd's moves 0.0122 GB a call.
    assert row["sigmoid_bwd", "numba"]["share_of_limit"] > 1 > row["sigmoid_bwd", "loops"]["share_of_limit"]
    said = " ".join(rep.footnotes(report))
    assert "sigmoid_bwd on numba (12.2 MB a call)" in said and "sigmoid_bwd on loops" not in said
    # A GEMM-rated step is said to run from the caches only when its roofline is the copy bound.
    assert "deep_course on numba" not in said
    row["deep_course", "numba"].update(bound="copy", min_bytes=5e6)
    said = " ".join(rep.footnotes(report))
    assert "deep_course on numba (5 MB a call)" in said
    notes = {(r["workload"], r["backend"]): cells[-1] for r, cells in zip(report["results"], rep.rows(report))}
    assert notes["sigmoid_bwd", "numba"] == "over the copy limit (12.2 MB a call): see under the table"
    assert notes["sigmoid_bwd", "loops"] == ""


def test_bench_cli_table_fits_columns_80_and_wide_adds_columns(cli, tmp_path):
    args = [*TINY, "--backends", "loops,numpy", "--workloads", "deep_course,dispatch"]
    narrow = CliRunner(env={"COLUMNS": "80"}).invoke(cli, [*args, "--json", str(tmp_path / "a.json")])
    assert narrow.exit_code == 0, narrow.output
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80
    header = next(line for line in narrow.stdout.splitlines() if line.split()[:2] == ["workload", "backend"])
    assert "first call" not in header and "x numpy" in header
    wide = CliRunner(env={"COLUMNS": "200"}).invoke(cli, [*args, "--wide", "--json", str(tmp_path / "b.json")])
    assert wide.exit_code == 0, wide.output
    assert "first call" in wide.stdout and "IQR/med" in wide.stdout
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert set(a) == set(b) and [set(r) for r in a["results"]] == [set(r) for r in b["results"]]


# -- what the first iteration waits for -------------------------------------------------------------

class NoteBackend(NumpyBackend):
    """A backend whose first call waits for something, as Numba's compiles its kernels."""

    name = "note"
    first_call_note = "compiling kernels, once"


@pytest.fixture
def recorded_progress(monkeypatch):
    """The descriptions the rich progress bar shows, in order."""
    import rich.progress

    shown = []

    class Recording(rich.progress.Progress):
        def add_task(self, description, *args, **kwargs):
            shown.append(description)
            return super().add_task(description, *args, **kwargs)

        def update(self, task_id, **kwargs):
            if "description" in kwargs:
                shown.append(kwargs["description"])
            super().update(task_id, **kwargs)

    monkeypatch.setattr(rich.progress, "Progress", Recording)
    return shown


def test_progress_bar_says_what_the_first_iteration_waits_for(recorded_progress):
    from dlaccel._progress import progress_reporter

    with progress_reporter(True, 3, "ShallowNN", "compiling [numba] kernels") as update:
        assert recorded_progress == ["ShallowNN (compiling [numba] kernels)"]
        update(1, 0.5)
    assert recorded_progress[-1] == "ShallowNN"


def test_fit_shows_the_backends_first_call_note(recorded_progress):
    X, Y = dlaccel.datasets.planar()
    dlaccel.ShallowNN(2, backend=NoteBackend()).fit(X, Y, num_iterations=2, progress=True)
    assert recorded_progress[0] == "ShallowNN (compiling kernels, once)" and recorded_progress[-1] == "ShallowNN"
    recorded_progress.clear()
    dlaccel.ShallowNN(2, backend="numpy").fit(X, Y, num_iterations=2, progress=True)
    assert recorded_progress[0] == "ShallowNN"


def test_train_says_what_the_first_iteration_waits_for(invoke, monkeypatch):
    from dlaccel import training

    monkeypatch.setattr(training, "get_backend", lambda name: NoteBackend())
    result = invoke("train", "--iterations", "2", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "note: compiling kernels, once; the first iteration waits for it" in result.stdout


def test_numba_says_it_compiles_until_it_has_kernels():
    pytest.importorskip("numba")
    from dlaccel.backends.numba_cpu import COMPILE_NOTE

    code = ("import dlaccel; from dlaccel import datasets; be = dlaccel.get_backend('numba'); "
            "print(be.first_call_note); X, Y = datasets.planar(); "
            "dlaccel.ShallowNN(2, backend=be).fit(X, Y, num_iterations=1); print(be.first_call_note)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [COMPILE_NOTE, "None"]
    assert "compiling Numba kernels" in COMPILE_NOTE and "cached" in COMPILE_NOTE


# -- the pictures explain themselves ----------------------------------------------------------------


def test_training_figure_names_classes_axes_splits_and_accuracy():
    pytest.importorskip("matplotlib")
    from dlaccel.cli.train import training_figure
    from dlaccel.training import split

    X, Y = dlaccel.datasets.planar()
    X_train, Y_train, X_test, Y_test = split(X, Y, 0.2, 1)
    model = dlaccel.ShallowNN(4, seed=1).fit(X_train, Y_train, num_iterations=50)
    fig = training_figure(model, (X_train, Y_train), (X_test, Y_test), "ShallowNN on planar")
    cost_ax, boundary = fig.axes
    assert cost_ax.get_xlabel() == "iteration" and cost_ax.get_ylabel() == "cost"
    train_acc, test_acc = 100 * model.accuracy(X_train, Y_train), 100 * model.accuracy(X_test, Y_test)
    assert f"train accuracy {train_acc:.1f} %" in cost_ax.get_title()
    assert f"test accuracy {test_acc:.1f} %" in cost_ax.get_title()
    assert boundary.get_xlabel() and boundary.get_ylabel()
    labels = [t.get_text() for t in boundary.get_legend().get_texts()]
    assert labels == ["class 0 (train)", "class 0 (test)", "class 1 (train)", "class 1 (test)"]
    # Training and test points differ in marker; each class keeps one colour across both.
    points = {c.get_label(): c for c in boundary.collections if c.get_label() in labels}
    paths = {label: points[label].get_paths()[0].vertices.tobytes() for label in labels}
    assert paths["class 0 (train)"] != paths["class 0 (test)"]
    colors = {label: tuple(points[label].get_facecolor()[0]) for label in labels}
    assert colors["class 0 (train)"] == colors["class 0 (test)"] != colors["class 1 (train)"]
    assert sum(len(points[f"class {c} (test)"].get_offsets()) for c in (0, 1)) == X_test.shape[1]


def test_training_figure_without_a_boundary_still_shows_accuracy():
    pytest.importorskip("matplotlib")
    from dlaccel.cli.train import training_figure

    X, Y = dlaccel.datasets.blobs()
    X3 = np.vstack([X, X[:1] * 0.5])  # three features: no boundary panel
    model = dlaccel.LogisticRegression().fit(X3[:, :150], Y[:, :150], num_iterations=20)
    fig = training_figure(model, (X3[:, :150], Y[:, :150]), (X3[:, 150:], Y[:, 150:]), "digits-like")
    (ax,) = fig.axes
    assert "train accuracy" in ax.get_title() and "test accuracy" in ax.get_title()


def test_speedup_chart_labels_its_axes_and_bars():
    pytest.importorskip("matplotlib")
    from dlaccel.bench import report as rep

    report = _fake_report()
    fig = rep.speedup_figure(report)
    (ax,) = fig.axes
    assert ax.get_xlabel().startswith("workload") and "speed-up over loops" in ax.get_ylabel()
    shown = [r for r in report["results"] if r["speedup_vs_loops"] is not None and r["unit"] != "overhead"]
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(rep.fmt_ratio(r["speedup_vs_loops"]) for r in shown)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["loops", "numpy", "numba", "torch"]


@pytest.mark.parametrize(("where", "early"), [([], False), (["--workers", "2"], False), (["--workers", "2"], True)],
                         ids=["local", "distributed", "distributed-while-the-cluster-starts"])
def test_ctrl_c_saves_prints_the_resume_command_and_exits_130(tmp_path, where, early, cli):
    """Ctrl-C at a terminal signals the whole process group (Dask's workers too), well into training
    or early, while the LocalCluster starts its workers."""
    import shlex
    import signal
    import time

    from dlaccel.training import prepare

    ckpt = tmp_path / "run.npz"
    cmd = [sys.executable, "-m", "dlaccel", "train", "--iterations", "10000000", "--checkpoint", str(ckpt),
           "--checkpoint-every", "20", "--no-progress", *where]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = proc.stdout.readline()
    assert first.startswith("training ShallowNN"), first
    if early:
        time.sleep(0.3)  # a cluster takes seconds to start
    else:  # training is under way once the first checkpoint is written, however slow the machine
        deadline = time.monotonic() + 120
        while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "Traceback" not in out, out
    if early:  # the cluster is still starting: no iteration ran, and nothing is claimed saved
        assert "interrupted before the first iteration; nothing to resume" in out, out
        assert not ckpt.exists() and "resume with" not in out, out
        return
    done = dlaccel.load(ckpt).iteration
    assert f"interrupted at iteration {done}; the model is saved to {ckpt}" in out
    resume = next(line for line in out.splitlines() if line.startswith("resume with: "))
    words = shlex.split(resume.removeprefix("resume with: "))
    assert words[:2] == ["dlaccel", "train"] and words[-2:] == ["--resume", str(ckpt)]
    # The printed command continues the run: here to five more iterations.
    t = prepare("planar", "shallow", layers=[20, 7, 5], hidden_units=4, seed=1, resume=ckpt)
    expected = t.model.fit(t.X_train, t.Y_train, num_iterations=5)
    words[words.index("--iterations") + 1] = str(done + 5)
    runner = CliRunner()
    result = runner.invoke(cli, words[1:] + ["--save", str(tmp_path / "after.npz")])
    assert result.exit_code == 0, result.output
    after = dlaccel.load(tmp_path / "after.npz")
    assert after.iteration == done + 5
    for k, p in expected.parameters.items():
        np.testing.assert_allclose(after.parameters[k], p, rtol=1e-9)


def test_ctrl_c_during_a_sweep_reports_and_writes_the_finished_trials_and_exits_130(tmp_path):
    import signal
    import time

    out_json = tmp_path / "sweep.json"
    # The 10-iteration trial finishes at once; the other runs for minutes.
    cmd = [sys.executable, "-m", "dlaccel", "sweep", "--hidden-units", "1", "--iterations", "10,100000000",
           "--workers", "0", "--no-progress", "--json", str(out_json)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(8)  # start-up and the short trial take a second or two
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "Traceback" not in out, out
    assert "interrupted: 1 of 2 trials finished, and only those are shown and written" in out, out
    written = dlaccel.SweepResult.from_json(out_json)
    assert [t.params for t in written.trials] == [{"num_iterations": 10}]


def test_train_distributed_and_checkpoint_options_are_checked_before_work(tmp_path, cli):
    runner = CliRunner()
    for args, message in [
        (["--workers", "2", "--cluster", "tcp://127.0.0.1:1"], "give one of them"),
        (["--checkpoint-every", "5"], "--checkpoint-every needs --checkpoint"),
        (["--checkpoint", str(tmp_path / "no" / "x.npz")], "--checkpoint:"),
        (["--resume", str(tmp_path / "missing.npz")], "no model file"),
    ]:
        result = runner.invoke(cli, ["train", "--iterations", "3", "--no-progress", *args])
        assert result.exit_code == 1, (args, result.output)
        assert result.output.count("Error:") == 1 and message in result.output, result.output
    dlaccel.LogisticRegression().fit(*dlaccel.datasets.planar(m=20), num_iterations=2).save(tmp_path / "lr.npz")
    result = runner.invoke(cli, ["train", "--resume", str(tmp_path / "lr.npz"), "--no-progress"])
    assert result.exit_code == 1 and "holds a LogisticRegression, not a ShallowNN" in result.output


def test_train_resumes_to_the_total_and_checkpoints_as_it_goes(tmp_path, cli):
    runner = CliRunner()
    ckpt = tmp_path / "c.npz"
    base = ["train", "--no-progress", "--checkpoint", str(ckpt)]
    assert runner.invoke(cli, [*base, "--iterations", "30", "--checkpoint-every", "10"]).exit_code == 0
    assert dlaccel.load(ckpt).iteration == 30
    result = runner.invoke(cli, [*base, "--iterations", "50", "--resume", str(ckpt)])
    assert result.exit_code == 0 and "20 iterations, resumed at iteration 30" in result.output
    resumed = dlaccel.load(ckpt)
    straight = runner.invoke(cli, ["train", "--no-progress", "--iterations", "50", "--save", str(tmp_path / "s.npz")])
    assert straight.exit_code == 0
    for k, p in dlaccel.load(tmp_path / "s.npz").parameters.items():
        np.testing.assert_allclose(resumed.parameters[k], p, rtol=1e-12)
    result = runner.invoke(cli, [*base, "--iterations", "40", "--resume", str(ckpt)])
    assert result.exit_code == 0 and "already at iteration 50 of 40; nothing to train" in result.output


def test_sweep_command_prints_the_table_and_writes_json_and_png(tmp_path, cli):
    pytest.importorskip("matplotlib")
    runner = CliRunner()
    result = runner.invoke(cli, ["sweep", "--hidden-units", "1,3", "--learning-rate", "1.2", "--iterations", "200",
                                 "--workers", "0", "--no-progress", "--json", str(tmp_path / "s.json"),
                                 "--plot", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(line for line in lines if "final cost" in line)
    assert "n_h" in header and "val acc" in header and "learning_rate" not in header  # single values are fixed
    rows = [line for line in lines if line.strip()[:1] in "*12" and "ok" in line]
    assert len(rows) == 2 and sum(r.startswith("*") for r in rows) == 1
    saved = json.loads((tmp_path / "s.json").read_text())
    assert [t["params"] for t in saved["trials"]] == [{"n_h": 1}, {"n_h": 3}]
    # The table's numbers are those of plain fits with the same settings on the same split.
    from dlaccel.training import load_dataset, split

    X_train, Y_train, X_test, Y_test = split(*load_dataset("planar"), 0.2, 1)
    for trial, n_h in zip(saved["trials"], (1, 3)):
        model = dlaccel.ShallowNN(n_h, seed=1).fit(X_train, Y_train, learning_rate=1.2, num_iterations=200)
        assert trial["val_accuracy"] == model.accuracy(X_test, Y_test)
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_sweep_command_refuses_mistakes_in_one_line(tmp_path, cli):
    runner = CliRunner()
    for args, message in [
        (["--layers", "8,4"], "--layers applies only to --model deep"),
        (["--model", "deep", "--hidden-units", "1,2"], "--hidden-units applies only to --model shallow"),
        (["--model", "logistic", "--hidden-activation", "tanh,relu"], "--hidden-activation applies"),
        (["--hidden-units", "1,x"], "cannot read 'x' as an integer"),
        (["--learning-rate", "0.1,-1"], "learning_rate"),
        ([], "nothing to sweep"),
        (["--hidden-units", "1,2", "--json", str(tmp_path / "no" / "s.json")], "--json:"),
        (["--hidden-units", "1,2", "--workers", "2", "--cluster", "tcp://127.0.0.1:1"], "give one of them"),
    ]:
        result = runner.invoke(cli, ["sweep", "--no-progress", "--workers", "0", *args]
                               if "--workers" not in args else ["sweep", "--no-progress", *args])
        assert result.exit_code == 1, (args, result.output)
        assert result.output.count("Error:") == 1 and message in result.output, (args, result.output)


def test_bench_runs_the_distributed_benchmark_alone(tmp_path, cli):
    pytest.importorskip("distributed")
    runner = CliRunner()
    mixed = runner.invoke(cli, ["bench", "-w", "distributed,deep"])
    assert mixed.exit_code == 1 and "run it alone" in mixed.output
    for workers, message in [("one", "--workers must be comma-separated worker counts"),
                             ("2,0", "--workers must be comma-separated worker counts of 1 or more"), (",", "got ','")]:
        bad = runner.invoke(cli, ["bench", "-w", "distributed", "--workers", workers])
        assert bad.exit_code == 1 and bad.output.count("Error:") == 1 and message in bad.output, bad.output
    elsewhere = runner.invoke(cli, ["bench", "-w", "dot", "--workers", "2"])
    assert elsewhere.exit_code == 1 and "-w distributed" in elsewhere.output
    result = runner.invoke(cli, ["bench", "-w", "distributed", "--profile", "tiny", "--workers", "1",
                                 "--json", str(tmp_path / "d.json")])
    assert result.exit_code == 0, result.output
    assert "Overhead per iteration" in result.output and "Targets (issue 9)" in result.output
    report = json.loads((tmp_path / "d.json").read_text())
    assert report["profile"] == "tiny" and report["workers"] == [1] and report["overhead"]
