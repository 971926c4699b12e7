"""The distributed benchmark's harness: timing arithmetic, the fitted scaling model, the table, the JSON.

Timings are fed in from known models (a fake clock, synthetic rows), so every expectation here is
computed from the constants the test chose, never from the code under test; no wall-clock thresholds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from dlaccel.bench import distributed as db
from dlaccel.errors import InputError

pytest.importorskip("dask.array")
pytest.importorskip("distributed")


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_per_iteration_cancels_the_set_up(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(db.time, "perf_counter", clock)
    # Warm-up first, then set-ups of at least 0.4 s plus noise that only ever adds.
    setups = iter([9.0, 0.4, 3.0, 0.9, 0.4, 2.0, 0.7])
    calls = []

    def fit(n):
        calls.append(n)
        clock.now += next(setups) + 0.25 * n

    timing = db.per_iteration(fit, (2, 10), repeats=3)
    assert calls == [2, 2, 10, 2, 10, 2, 10]
    assert timing["per_iteration_s"] == pytest.approx(0.25)  # the fastest of each: the set-up cancels
    assert timing["short_s"] == pytest.approx([0.9, 1.4, 2.5])
    assert timing["long_s"] == pytest.approx([5.5, 2.9, 3.2])
    assert timing["median_slope_s"] == pytest.approx(np.median([4.6 / 8, 1.5 / 8, 0.7 / 8]))


def test_fit_line_recovers_slope_and_intercept():
    a, o = 3e-6, 0.02
    ms = [1e4, 2e4, 5e4, 1e5]
    a_got, o_got, held = db.fit_line(ms, [a * m + o for m in ms])
    assert (a_got, o_got) == pytest.approx((a, o)) and not held


def test_a_negative_intercept_is_held_at_zero_and_the_slope_refitted():
    # Timings slightly superlinear in m (caches) make the free fit's intercept negative: no overhead
    # is negative, so the line goes through the origin instead, fitted by least squares there.
    ms = np.array([1e4, 2e4, 5e4, 1e5, 2e5])
    ts = 5.4e-6 * ms * (1 + ms / 4e6)
    assert np.polyfit(ms, ts, 1)[1] < 0
    a, o, held = db.fit_line(ms, ts)
    assert held and o == 0
    assert a == pytest.approx(float(ms @ ts / (ms @ ms)))


def test_overhead_terms_the_noise_makes_negative_are_held_at_zero():
    # beta (per-worker latency) is truly ~0; noise pushes the free fit below zero.
    rows = [{"workers": w, "param_bytes": b, "per_iteration_s": 2e-3 + w * 4e-9 * b + noise}
            for (w, b), noise in zip([(1, 3e3), (1, 1e5), (1, 3e6), (2, 3e3), (2, 1e5), (2, 3e6)],
                                     [3e-4, 3e-4, 0, -3e-4, -3e-4, 0])]
    A = np.array([[1, r["workers"], r["workers"] * r["param_bytes"]] for r in rows])
    free = np.linalg.lstsq(A, [r["per_iteration_s"] for r in rows], rcond=None)[0]
    assert free[1] < 0
    om = db.fit_overhead(rows)
    assert om["held_at_zero"] == ["beta_s"] and om["beta_s"] == 0
    assert om["alpha_s"] > 0 and om["gamma_s_per_byte"] == pytest.approx(4e-9, rel=0.05)


def synthetic(c=8e-6, c1=4.4e-6, o1=1e-3, alpha=2e-3, beta=4e-3, gamma=5e-9, ms=(1e4, 5e4, 2e5), at_m=200_000,
              bytes_=(3_220, 101_800, 3_180_040)):
    """A result whose timings follow t = c m / w + o(w, B) for the workers, and t = c1 m + o1 for the
    one process (c1 < c: two BLAS threads, but not twice as fast)."""
    B = db._param_bytes((db.N_X, db.HIDDEN, db.N_CLASSES))

    def o(w, b):
        return alpha + w * (beta + gamma * b)

    scaling = [{"config": db.ONE_PROCESS, "cores": 2, "m": m, "per_iteration_s": c1 * m + o1} for m in ms]
    for w in (1, 2):
        scaling += [{"config": db._workers_label(w), "cores": w, "workers": w, "m": m,
                     "per_iteration_s": c * m / w + o(w, B)} for m in ms]
    overhead = [{"workers": w, "hidden": 1, "param_bytes": b, "m": 4 * w, "per_iteration_s": o(w, b)}
                for w in (1, 2) for b in bytes_]
    return {"at_m": at_m, "scaling": scaling, "overhead": overhead}, o, B


def test_analyse_fits_the_scaling_model():
    c, c1, o1 = 8e-6, 4.4e-6, 1e-3
    result, o, B = synthetic(c, c1, o1)
    an = db.analyse(result)
    two = an["configs"][db._workers_label(2)]
    assert two["per_example_s"] == pytest.approx(c / 2)
    assert two["compute_per_example_1core_s"] == pytest.approx(c)
    assert two["overhead_s"] == pytest.approx(o(2, B))
    assert an["configs"][db.ONE_PROCESS]["overhead_s"] == pytest.approx(o1)
    # Break-even: where the two lines cross.
    m_star = an["break_even_m"]
    assert c1 * m_star + o1 == pytest.approx(c * m_star / 2 + o(2, B))
    # Efficiency at 200k: one process over two workers, ideal 1 on the same two cores.
    eff = an["efficiency"]
    assert eff["ideal_speedup"] == 1
    assert eff["measured"]
    assert eff["value"] == pytest.approx((c1 * 2e5 + o1) / (c * 1e5 + o(2, B)))
    assert an["parallel_efficiency"]["value"] == pytest.approx((c * 2e5 + o(1, B)) / (2 * (c * 1e5 + o(2, B))))
    om = an["overhead_model"]
    assert (om["alpha_s"], om["beta_s"], om["gamma_s_per_byte"]) == pytest.approx((2e-3, 4e-3, 5e-9))


def test_predictions_for_more_workers():
    c = 8e-6
    result, o, B = synthetic(c=c)
    pred = db.analyse(result)["predictions"]
    assert pred["param_bytes"] == B and pred["compute_per_example_1core_s"] == pytest.approx(c)
    by_w = {p["workers"]: p for p in pred["rows"]}
    assert set(by_w) == set(db.PREDICT_WORKERS)
    for w, p in by_w.items():
        assert p["overhead_s"] == pytest.approx(o(w, B))
        assert p["t_at_m_s"] == pytest.approx(c * 2e5 / w + o(w, B))
        m = p["pays_above_m"]  # w workers take exactly as long as one there
        assert c * m / w + o(w, B) == pytest.approx(c * m + o(1, B))
        m = p["efficiency_85_above_m"]
        assert (c * m + o(1, B)) / (w * (c * m / w + o(w, B))) == pytest.approx(0.85)


def test_break_even_is_none_when_the_workers_are_no_faster():
    # Two workers slower per example than the one process: distributing never pays.
    result, _, _ = synthetic(c=8e-6, c1=3e-6)
    assert db.analyse(result)["break_even_m"] is None


def test_efficiency_from_the_model_when_at_m_was_not_measured():
    c, c1, o1 = 8e-6, 4.4e-6, 1e-3
    result, o, B = synthetic(c, c1, o1, ms=(1e4, 2e4, 4e4))
    eff = db.analyse(result)["efficiency"]
    assert not eff["measured"]
    assert eff["value"] == pytest.approx((c1 * 2e5 + o1) / (c * 1e5 + o(2, B)))


def full_result(peer=None, memory=None):
    result, _, _ = synthetic()
    result.update(profile="tiny", dtype="float32", workload={"layer_dims": [784, 256, 10]},
                  machine={"cpu": {"model": "test CPU", "usable_cores": 2}, "load_average": [3.5, 2.0, 1.0]},
                  peer=peer, memory=memory)
    result["analysis"] = db.analyse(result)
    result["checks"] = db.check_targets(result)
    return result


def test_targets_are_checked_against_their_limits():
    peer = {"m": 400, "n_x": 20, "iterations": 2, "dlaccel_s": 0.01, "dlaccel_cost": 0.5, "peer": "dask-ml 0",
            "peer_s": 0.04, "peer_cost": 0.4, "speedup": 4.0, "note": "n"}
    memory = {"m": 10, "data_bytes": 1.5e9, "workers": 2, "iterations": 1, "growth_bytes": 250e6, "method": "psutil"}
    checks = {c["what"]: c for c in full_result(peer, memory)["checks"]}
    # o(w, B) = 2 ms + w (4 ms + 5 ns/B): 3 KB at 1 worker is 6 ms (met), 3 MB at 2 workers 42 ms (> 40 ms)
    assert checks["overhead, 3 KB, 1 worker(s)"]["met"] is True
    assert checks["overhead, 3106 KB, 2 worker(s)"]["met"] is False
    assert checks["overhead, 3106 KB, 1 worker(s)"]["met"] is True  # 2 + 4 + 15.9 ms <= 40 ms
    assert checks["dlaccel vs dask-ml per iteration"]["met"] is False
    assert checks["client memory growth, 1.5 GB data set"]["met"] is False


def test_a_negative_overhead_is_noise_not_a_met_target():
    result = full_result()
    result["overhead"][0]["per_iteration_s"] = -1.6e-3  # the long fits came out faster than the short
    result["checks"] = db.check_targets(result)
    (check,) = [c for c in result["checks"] if c["value"] == -1.6e-3]
    assert check["met"] is None
    assert f"{check['what']}: -1.6 ms (target <= 10 ms): too noisy to tell" in db.format_table(result)


def test_format_table_shows_the_numbers_and_the_load():
    peer = {"m": 400, "n_x": 20, "iterations": 2, "dlaccel_s": 0.01, "dlaccel_cost": 0.5, "peer": None,
            "note": "dask-ml is not installed (pip install dask-ml); peer row skipped"}
    text = db.format_table(full_result(peer=peer))
    assert "load average 3.50 2.00 1.00" in text
    assert "dask-ml is not installed" in text and "x faster" not in text
    assert db.ONE_PROCESS in text and db._workers_label(2) in text
    assert "break-even m" in text and "efficiency at m = 200,000" in text
    for w in db.PREDICT_WORKERS:
        assert f"{w:>3} workers: o = " in text
    assert "NOT met" in text  # the 3 MB overhead above


def test_peak_rss_sees_an_allocation():
    with db.PeakRSS(interval_s=0.001) as rss:
        block = np.ones(64 * 2**20 // 8)  # 64 MB, every page touched
        del block
    assert rss.growth >= 48 * 2**20


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"profile": "huge"}, "profile must be one of"),
    ({"workers": (0, 2)}, "workers must be positive integers"),
    ({"workers": 2}, "workers must be a sequence"),
    ({"workers": ()}, "workers must be positive integers"),
])
def test_bad_arguments_fail_before_any_cluster(monkeypatch, kwargs, message):
    monkeypatch.setattr(db, "client_for", lambda **kw: pytest.fail("a cluster was started"))
    with pytest.raises(InputError, match=message):
        db.run_distributed(**kwargs)


def test_unwritable_output_fails_before_any_cluster(monkeypatch, tmp_path):
    monkeypatch.setattr(db, "client_for", lambda **kw: pytest.fail("a cluster was started"))
    with pytest.raises(FileNotFoundError, match="JSON report"):
        db.run_distributed("tiny", json_path=tmp_path / "missing" / "r.json")


@pytest.mark.slow
def test_a_tiny_run_writes_its_json_and_chart(monkeypatch, tmp_path):
    # The smallest run that exercises every measurement on a real LocalCluster of one worker.
    tiny = dict(db.PROFILES["tiny"], overhead_hidden=(1,), m=(100, 200), at_m=200, peer_m=100, memory_bytes=1e6)
    monkeypatch.setitem(db.PROFILES, "tiny", tiny)
    said = []
    result = db.run_distributed("tiny", workers=(1,), json_path=tmp_path / "r.json", plot_path=tmp_path / "r.png",
                                progress=said.append)
    assert said
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(result))
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["schema"] == db.SCHEMA and result["workers"] == [1]
    assert [(r["config"], r["m"]) for r in result["scaling"]] == [
        (db.ONE_PROCESS, 100), (db.ONE_PROCESS, 200), (db._workers_label(1), 100), (db._workers_label(1), 200)]
    assert [r["param_bytes"] for r in result["overhead"]] == [(784 + 1) * 1 * 4 + (1 + 1) * 10 * 4]
    assert result["memory"]["data_bytes"] >= 1e6 * 0.99
    peer = result["peer"]
    assert np.isfinite(peer["dlaccel_cost"]) and peer["dlaccel_cost"] < np.log(2)  # it learned something
    if peer["peer"] is not None:
        assert np.isfinite(peer["peer_cost"]) and np.isfinite(peer["speedup"])  # timings: any sign under load
    assert "Targets (issue 9)" in db.format_table(result)


def test_noisy_timings_are_flagged_not_trusted():
    result, _, _ = synthetic()
    for r in result["scaling"]:
        if r["config"] == db._workers_label(1):
            r["per_iteration_s"] = 0.9 - r["m"] * 1e-6  # slower at small m: load, not compute
    result = full_result() | {"scaling": result["scaling"]}
    result["analysis"] = db.analyse(result)
    assert result["analysis"]["unphysical"] == [db._workers_label(1)]
    assert "WARNING: time per iteration does not grow with m, or came out zero or negative, in 1 worker x 1 thread" \
        in db.format_table(result)
    assert db.analyse(synthetic()[0])["unphysical"] == []


def test_a_negative_time_per_iteration_is_flagged_and_left_off_the_chart():
    pytest.importorskip("matplotlib")
    result = full_result()
    row = next(r for r in result["scaling"] if r["config"] == db._workers_label(2))
    row["per_iteration_s"] = -2e-3  # the long fits came out faster than the short: noise
    result["analysis"] = db.analyse(result)
    assert result["analysis"]["unphysical"] == [db._workers_label(2)]
    (ax,) = db.scaling_figure(result).axes
    measured = {line.get_label(): line.get_ydata() for line in ax.get_lines() if line.get_marker() == "o"}
    assert all((ys > 0).all() for ys in measured.values())
    assert [len(ys) for ys in measured.values()] == [3, 3, 2]  # synthetic()'s three m, one left out
    labels = ax.get_legend_handles_labels()[1]
    assert f"{db._workers_label(2)} (1 point(s) <= 0 left out: noise)" in labels


def test_the_peers_exp_overflow_warnings_are_hidden_then_shown_again():
    import warnings

    before = list(warnings.filters)
    try:
        db._exp_overflow_warnings(False)
        with warnings.catch_warnings(record=True) as seen:
            np.exp(np.float32(1000))
        assert not seen
        db._exp_overflow_warnings(True)
        assert list(warnings.filters) == before
        with pytest.warns(RuntimeWarning, match="overflow encountered in exp"):
            np.exp(np.float32(1000))
    finally:
        warnings.filters[:] = before
