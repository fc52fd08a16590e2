"""The robust few-shot transfer fit: positive by construction, one outlier does not decide, dead ops
decided by the device's own samples, saved / loaded / compiled, and its self-check."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from latnas.schema.errors import DataError
from latnas.schema.spaces import get_space
from predictors.data import ArchTable
from predictors.liveness import LiveDeadRidge, live_dead_design
from predictors.metrics import latency_metrics
from predictors.persistence import load_latency_table, load_predictor, save_predictor
from predictors.transfer import TransferPredictor, fit_source_models

NB201_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201" / "nb201_accuracy_latency.csv"


@pytest.fixture(scope="module")
def space():
    return get_space("nb201")


@pytest.fixture(scope="module")
def cells(space):
    return make_cells(space)


def make_cells(space):
    """A synthetic NB201 table: 3 devices that run every op, 2 that fold dead ops and cut-off cells."""
    archs = np.array(list(itertools.product(range(5), repeat=6)), dtype=np.int64)
    rng = np.random.default_rng(0)
    live, cut = space.live_mask(archs), space.cut_off(archs)
    rows = np.arange(6)
    cols = {}
    base = np.array([0.0, 0.05, 0.6, 1.5, 0.4])  # none, skip, 1x1, 3x3, pool
    for name, fold, scale in (("run_a", False, 1.0), ("run_b", False, 2.5), ("run_c", False, 0.7),
                              ("fold_a", True, 1.3), ("fold_b", True, 3.0)):
        tab = scale * base[None, :] * rng.uniform(0.8, 1.2, size=(6, 5))
        per_op = tab[rows, archs]
        if fold:
            y = np.where(cut, 0.004, 2.0 * scale + (per_op * live).sum(axis=1))
        else:
            y = 2.0 * scale + per_op.sum(axis=1) + 0.1 * scale * (archs == 0).sum(axis=1)
        cols[f"{name}_ms"] = y * rng.lognormal(0.0, 0.01, size=len(y))
    strings = [space.format_arch(a) for a in archs]
    return ArchTable(space="nb201", archs=archs, arch_strings=strings, columns=cols)


@pytest.fixture(scope="module")
def sources(cells):
    return fit_source_models(cells, list(cells.columns))


def _fit(sources, cells, target, rows, **kw):
    src = {c: m for c, m in sources.items() if c != target}
    y = cells.column(target)
    return TransferPredictor(space="nb201", source_models=src, **kw).fit(cells.archs[rows], y[rows])


def test_live_dead_design_separates_cut_off_archs(space):
    archs = np.array([space.parse_arch(a) for a in ("333333", "000333", "330000")])
    x = live_dead_design(space, archs)
    n = 30
    assert x.shape == (3, 3 * n + 1)
    assert x[0, :n].sum() == 6 and x[0, n:].sum() == 0  # all live
    assert x[1, :n].sum() == 1 and x[1, n:2 * n].sum() == 5  # one live edge, five dead (three of them none)
    assert x[2, 2 * n:3 * n].sum() == 6 and x[2, -1] == 1  # cut off: only the cut-off block


def test_fold_device_learns_that_dead_ops_are_free(cells, sources):
    """A target that folds, with only run devices and one folding device as sources: its 10 samples pick fold."""
    rows = np.random.default_rng(1).permutation(len(cells))[:10]
    model = _fit(sources, cells, "fold_b_ms", rows)
    y = cells.column("fold_b_ms")
    pred = model.predict(cells.archs)
    assert np.all(pred > 0)
    m = latency_metrics(y, pred)
    assert m["spearman"] > 0.95 and m["mape"] < 0.3, m
    plain = _fit(fit_source_models(cells, list(cells.columns), liveness=False), cells, "fold_b_ms", rows, liveness=False)
    assert latency_metrics(y, plain.predict(cells.archs))["mape"] > 2 * m["mape"]


def test_run_device_keeps_dead_op_costs(cells, sources):
    rows = np.random.default_rng(2).permutation(len(cells))[:10]
    model = _fit(sources, cells, "run_b_ms", rows)
    m = latency_metrics(cells.column("run_b_ms"), model.predict(cells.archs))
    assert m["spearman"] > 0.98 and m["within_10pct"] > 0.9, m


def test_one_outlier_sample_does_not_decide(cells, sources):
    rows = np.random.default_rng(3).permutation(len(cells))[:10]
    y = cells.column("run_a_ms").copy()
    clean = _fit(sources, cells, "run_a_ms", rows, self_check=False).predict(cells.archs)
    y_bad = y.copy()
    y_bad[rows[0]] *= 0.05  # one sample measured 20x too fast
    src = {c: m for c, m in sources.items() if c != "run_a_ms"}
    bad = TransferPredictor(space="nb201", source_models=src, self_check=False).fit(cells.archs[rows], y_bad[rows])
    pred = bad.predict(cells.archs)
    assert np.all(pred > 0) and bad.intercept_ > -0.5 * np.median(y)
    assert np.median(np.abs(pred / clean - 1.0)) < 0.1
    old = TransferPredictor(space="nb201", source_models=src, method="nnls", stage_features=True,
                            residual=True).fit(cells.archs[rows], y_bad[rows])
    assert np.median(np.abs(old.predict(cells.archs) / clean - 1.0)) > np.median(np.abs(pred / clean - 1.0))


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan])
def test_bad_target_samples_one_line(cells, sources, bad):
    rows = np.arange(10)
    y = cells.column("run_a_ms")[rows].copy()
    y[3] = bad
    with pytest.raises(DataError) as exc:
        TransferPredictor(space="nb201", source_models=sources).fit(cells.archs[rows], y)
    assert "\n" not in str(exc.value)


def test_too_few_samples_one_line(cells, sources):
    with pytest.raises(DataError, match="at least 3"):
        _fit(sources, cells, "run_a_ms", np.arange(2))


def test_save_load_compile_and_self_check(cells, sources, space, tmp_path):
    rows = np.random.default_rng(4).permutation(len(cells))[:10]
    model = _fit(sources, cells, "fold_a_ms", rows, self_check=True)
    assert set(model.loo_) == {"n", "mape", "within_10pct", "spearman", "max_rel_err"} and model.loo_["n"] == 10
    folder = save_predictor(model, tmp_path / "m", target="fold_a_ms")
    loaded, _ = load_predictor(folder, space="nb201")
    np.testing.assert_array_equal(loaded.predict(cells.archs), model.predict(cells.archs))
    assert loaded.loo_ == pytest.approx(model.loo_)
    table = load_latency_table(folder, space)
    assert "additive_projection" in table.meta  # fold views are not additive on a cell space
    assert np.all(table.predict(cells.archs) >= model.floor_ * (1 - 1e-9))
    assert TransferPredictor(space="nb201", source_models=sources, self_check=False).fit(
        cells.archs[rows], cells.column("run_a_ms")[rows]).loo_ == {}


def test_nnls_state_without_method_still_loads(cells, space):
    """Models saved before the robust fit carry no 'method' in their state: they restore as nnls."""
    src = fit_source_models(cells, ["run_b_ms"], liveness=False)
    rows = np.arange(0, 15625, 700)
    old = TransferPredictor(space="nb201", source_models=src, method="nnls").fit(cells.archs[rows], cells.column("run_a_ms")[rows])
    state = old.to_state()
    state.pop("method")
    state.pop("loo")
    back = TransferPredictor(space="nb201", source_models=src).set_state(state, {})
    assert back.method == "nnls"
    np.testing.assert_array_equal(back.predict(cells.archs[:50]), old.predict(cells.archs[:50]))


def test_live_dead_ridge_compiles_on_chain_only(cells):
    fb = get_space("fbnet")
    archs = np.array(fb.random_archs(200, 0), dtype=np.int64)
    y = 1.0 + archs.sum(axis=1) * 0.1
    m = LiveDeadRidge(space="fbnet").fit(archs, y)
    np.testing.assert_allclose(m.to_latency_table(fb).predict(archs), m.predict(archs), rtol=1e-9)
    nb = LiveDeadRidge(space="nb201").fit(cells.archs[:500], cells.column("fold_a_ms")[:500])
    with pytest.raises(Exception, match="not additive"):
        nb.to_latency_table(get_space("nb201"))


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.skipif(not NB201_CSV.is_file(), reason="shared NAS-Bench-201 table not found")
def test_pixel3_k10_is_not_absurd(space):
    from predictors.data import load_arch_table

    table = load_arch_table(NB201_CSV, space)
    devices = [c for c in table.columns if c.endswith("_ms")]
    src = fit_source_models(table, [d for d in devices if d != "pixel3_ms"])
    y = table.column("pixel3_ms")
    perm = np.random.default_rng(0).permutation(len(table))
    model = TransferPredictor(space="nb201", source_models=src, self_check=False).fit(table.archs[perm[:10]], y[perm[:10]])
    pred = model.predict(table.archs[perm[10:]])
    m = latency_metrics(y[perm[10:]], pred)
    assert np.all(pred > 0) and m["spearman"] > 0.8 and m["mape"] < 1.0, m
