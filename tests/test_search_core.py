"""Search core: data loaders, random-weight evaluation, the pymoo problem, NSGA-II."""
from __future__ import annotations

import numpy as np
import pytest

from latnas.schema.errors import DataError
from latnas.search import Budget, SearchContext, run_algorithm
from latnas.search.data import load_data
from latnas.search.problem import (
    ArchEvaluator,
    ArchProblem,
    SearchProblem,
    nearest_allowed_map,
    pareto_indices,
    repair_to_mask,
)
from latnas.search.rwe import RWEConfig, RWEScorer, linear_probe_accuracy
from latnas.schema.spaces import get_space

from search_helpers import CountingScorer, synthetic_table


@pytest.fixture(scope="module")
def fbnet():
    return get_space("fbnet")


@pytest.fixture(scope="module")
def tiny_digits(fbnet):
    return load_data(space=fbnet, n_train=120, n_val=80, seed=0, resolution=8)


# ------------------------------------------------------------------- data
def test_digits_default_shapes_and_split(fbnet):
    d = load_data(space=fbnet, n_train=300, n_val=200, seed=1)
    assert tuple(d.x_train.shape) == (300, 3, 32, 32)  # the space's input shape
    assert tuple(d.x_val.shape) == (200, 3, 32, 32)
    assert d.num_classes == 10 and int(d.y_train.max()) <= 9
    # standardized with training statistics
    assert abs(float(d.x_train.mean())) < 1e-3
    assert set(np.unique(d.y_val.numpy())) <= set(range(10))


def test_large_input_space_uses_reduced_resolution():
    d = load_data(space="proxyless", n_train=50, n_val=20)
    assert tuple(d.x_train.shape[1:]) == (3, 32, 32)


def test_missing_or_bad_paths_are_one_line_data_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data(tmp_path / "nope")
    (tmp_path / "data_batch_1").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(DataError, match="never unpickles"):
        load_data(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="image-folder"):
        load_data(empty)


def _cifar_records(labels, label_bytes=1):
    rng = np.random.default_rng(0)
    rows = []
    for lab in labels:
        head = bytes([lab % 20, lab]) if label_bytes == 2 else bytes([lab])
        rows.append(head + rng.integers(0, 256, 3072, dtype=np.uint8).tobytes())
    return b"".join(rows)


def test_cifar10_binary_reads_labels(tmp_path):
    (tmp_path / "data_batch_1.bin").write_bytes(_cifar_records([3, 1, 4, 1, 5, 9, 2, 6]))
    (tmp_path / "test_batch.bin").write_bytes(_cifar_records([7, 8, 0]))
    d = load_data(tmp_path, space="fbnet", n_train=100, n_val=100)
    assert d.num_classes == 10
    assert sorted(d.y_train.tolist()) == [1, 1, 2, 3, 4, 5, 6, 9]
    assert sorted(d.y_val.tolist()) == [0, 7, 8]
    assert tuple(d.x_train.shape) == (8, 3, 32, 32)


def test_cifar100_binary_uses_fine_label_and_rejects_truncated(tmp_path):
    (tmp_path / "train.bin").write_bytes(_cifar_records([42, 99, 7], label_bytes=2))
    (tmp_path / "test.bin").write_bytes(_cifar_records([13], label_bytes=2))
    d = load_data(tmp_path, n_train=10, n_val=10, resolution=16)
    assert d.num_classes == 100 and sorted(d.y_train.tolist()) == [7, 42, 99]
    assert tuple(d.x_val.shape) == (1, 3, 16, 16)
    (tmp_path / "test.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="not a CIFAR binary file"):
        load_data(tmp_path)


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(6):
            arr = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / cls / f"{i}.png")
    d = load_data(tmp_path, n_train=8, n_val=4, resolution=16)
    assert d.num_classes == 2
    assert tuple(d.x_train.shape) == (8, 3, 16, 16) and len(d.y_val) == 4
    (tmp_path / "dog" / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot read image"):
        load_data(tmp_path, n_train=12, n_val=1, resolution=16)


# -------------------------------------------------------------------- RWE
def test_linear_probe_separates_separable_data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    x = rng.normal(size=(90, 5)) + 4 * np.eye(3, 5)[y]
    assert linear_probe_accuracy(x[:60], y[:60], x[60:], y[60:]) > 0.9


def test_rwe_score_range_determinism_and_variety(fbnet, tiny_digits):
    archs = fbnet.random_archs(4, rng=3)
    a = RWEScorer(fbnet, tiny_digits, RWEConfig(seed=0))(archs)
    b = RWEScorer(fbnet, tiny_digits, RWEConfig(seed=0))(archs)
    assert np.all((a >= 0) & (a <= 1))
    np.testing.assert_array_equal(a, b)  # same seed -> same scores
    assert len(np.unique(a)) > 1  # different archs are told apart
    assert a.max() > 0.2  # better than chance (10 classes) for at least one arch


# ---------------------------------------------------------------- problem
def test_repair_maps_to_nearest_allowed_choice():
    space = get_space("proxyless")
    mask = space.allowed_mask()
    lookup = nearest_allowed_map(mask)
    x = np.full((3, space.n_layers), 6.4)  # "skip" (6) rounded, not allowed on strided layers
    x[1] = -3
    fixed = repair_to_mask(x, mask, lookup)
    assert mask[np.arange(space.n_layers)[None, :].repeat(3, 0), fixed].all()
    stride_layer = space.vital[0]
    assert fixed[0, stride_layer] == 5 and fixed[1, stride_layer] == 0


def test_problem_shapes_and_constraint_sign(fbnet):
    table = synthetic_table(fbnet)
    scorer = CountingScorer(table)
    _, min_lat = table.min_arch()
    budget = min_lat + 1.0
    ev = ArchEvaluator(SearchProblem(fbnet, table, scorer, budget=Budget(budget, "ms")), max_evals=100)
    problem = ArchProblem(ev)
    assert problem.n_var == fbnet.n_layers and problem.n_obj == 2 and problem.n_ieq_constr == 1
    assert problem.xl.min() == 0 and problem.xu.max() == fbnet.n_choices - 1
    X = np.array(fbnet.random_archs(10, rng=0) + [tuple(table.min_arch()[0])])
    out = {}
    ev.evaluate(X)  # score first (ask/tell); the pymoo problem only reads the scores
    problem._evaluate(X, out)
    lat = table.predict(X)
    assert out["F"].shape == (11, 2) and out["G"].shape == (11, 1)
    np.testing.assert_allclose(out["G"][:, 0], lat - budget)
    feasible = lat <= budget
    assert feasible.sum() >= 1 and (~feasible).sum() >= 1
    # over-budget archs are not scored (no evaluation spent) and get score 0
    assert scorer.calls == int(feasible.sum()) == ev.n_evals
    assert np.all(out["F"][~feasible, 0] == 0)
    assert np.all(out["F"][feasible, 0] < 0)  # -score
    np.testing.assert_allclose(out["F"][:, 1], lat)


def test_evaluator_stops_at_eval_bound(fbnet):
    table = synthetic_table(fbnet)
    scorer = CountingScorer(table)
    ev = ArchEvaluator(SearchProblem(fbnet, table, scorer), max_evals=5)
    scores, _ = ev.evaluate(np.array(fbnet.random_archs(8, rng=1)))
    assert ev.n_evals == 5 == scorer.calls
    assert np.isnan(scores).sum() == 3
    ev.evaluate(np.array(fbnet.random_archs(8, rng=1)))  # cached, nothing new
    assert scorer.calls == 5


def test_pareto_indices():
    scores = np.array([0.5, 0.6, 0.4, 0.6, 0.7])
    lat = np.array([1.0, 2.0, 1.5, 3.0, 4.0])
    assert pareto_indices(scores, lat) == [0, 1, 4]


# ---------------------------------------------------------------- NSGA-II
def _front_is_non_dominated(scores, lat):
    for i in range(len(scores)):
        for j in range(len(scores)):
            if i != j and scores[j] >= scores[i] and lat[j] <= lat[i] and (scores[j] > scores[i] or lat[j] < lat[i]):
                return False
    return True


def test_nsga2_small_budget_returns_feasible_non_dominated_front(fbnet):
    table = synthetic_table(fbnet, seed=2)
    _, min_lat = table.min_arch()
    budget = min_lat + 0.35 * (float(table.predict(np.nanargmax(table.table, axis=1)[None])[0]) - min_lat)
    scorer = CountingScorer(table)
    ctx = SearchContext(space=fbnet, latency=table, budget=Budget(budget, "ms"), evals=60, seed=0, scorer=scorer,
                        options={"pop_size": 12})
    res = run_algorithm("nsga2", ctx)
    assert res.algo == "nsga2" and 0 < res.evals <= 60 and scorer.calls == res.evals
    assert len(res.archs) >= 2
    assert np.all(np.asarray(res.predicted) <= budget)
    np.testing.assert_allclose(res.predicted, table.predict(np.asarray(res.archs)))
    assert res.scores == sorted(res.scores, reverse=True)
    assert _front_is_non_dominated(np.asarray(res.scores), np.asarray(res.predicted))
    # the search improves on its random initial population
    first = next(h for h in res.history if h["phase"] == "nsga2")
    assert res.scores[0] >= first["best_score"]
    # same seed, same result
    res2 = run_algorithm("nsga2", SearchContext(space=fbnet, latency=table, budget=Budget(budget, "ms"), evals=60, seed=0,
                                                scorer=CountingScorer(table), options={"pop_size": 12}))
    assert res2.archs == res.archs


def test_nsga2_unconstrained_front_spans_latency(fbnet):
    table = synthetic_table(fbnet, seed=3, knots=False)
    ctx = SearchContext(space=fbnet, latency=table, budget=None, evals=50, seed=1, scorer=CountingScorer(table))
    res = run_algorithm("nsga2", ctx)
    assert len(res.archs) >= 3 and max(res.predicted) > min(res.predicted)
    assert _front_is_non_dominated(np.asarray(res.scores), np.asarray(res.predicted))
