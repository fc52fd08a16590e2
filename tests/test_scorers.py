"""Accuracy scorers: the registry contract on fbnet and nb201, and each scorer's own math."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from latnas.schema.errors import DataError, UnknownNameError
from latnas.schema.latency_table import flops_table
from latnas.search.data import load_data
from latnas.search.scorers import SCORERS, ScorerConfig, make_scorer
from latnas.schema.spaces import get_space

BUILTIN = ("flops", "naswot", "params", "rwe", "synflow", "table")
NB201_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201" / "nb201_accuracy_latency.csv"


@pytest.fixture(scope="module")
def small():
    """Small-resolution spaces and tiny data, so every scorer runs in about a second."""
    out = {}
    for name in ("fbnet", "nb201"):
        space = get_space(name, resolution=16)
        out[name] = (space, load_data(space=space, n_train=40, n_val=20, seed=0))
    return out


def _table_csv(tmp_path, space, archs, values, column="acc", arch_column="arch", fmt=None):
    fmt = fmt or space.format_arch
    lines = [f"{arch_column},{column}"] + [f"{fmt(a)},{v}" for a, v in zip(archs, values)]
    path = tmp_path / f"scores{len(list(tmp_path.iterdir()))}.csv"  # a new file per call
    path.write_text("\n".join(lines) + "\n")
    return path


def test_registry_has_the_builtins():
    assert set(BUILTIN) <= set(SCORERS.names())
    with pytest.raises(UnknownNameError):
        make_scorer("accuracy_oracle", ScorerConfig(space=get_space("nb201")))


@pytest.mark.parametrize("space_name", ["fbnet", "nb201"])
@pytest.mark.parametrize("name", BUILTIN)
def test_scorer_contract(small, tmp_path, space_name, name):
    """Every scorer: one finite score per arch, deterministic for a seed, on both spaces."""
    space, data = small[space_name]
    archs = space.random_archs(3, rng=1)
    config = {}
    if name == "table":
        path = _table_csv(tmp_path, space, archs, [70.5, 71.5, 69.0])
        config = {"table": str(path), "column": "acc"}
    if name == "naswot":
        config = {"options": {"batch_size": 16}}

    def run():
        return make_scorer(name, ScorerConfig(space=space, data=data, seed=3, **config))(archs)

    first = run()
    assert first.shape == (3,) and first.dtype == np.float64 and np.all(np.isfinite(first))
    np.testing.assert_array_equal(first, run())
    if name == "table":
        np.testing.assert_array_equal(first, [70.5, 71.5, 69.0])


@pytest.mark.parametrize("space_name", ["fbnet", "nb201", "repnas"])
def test_params_and_flops_count_the_built_model(space_name):
    space = get_space(space_name, resolution=16)
    archs = space.random_archs(3, rng=2)
    params = make_scorer("params", ScorerConfig(space=space))(archs)
    flops = make_scorer("flops", ScorerConfig(space=space))(archs)
    for arch, p in zip(archs, params):
        with torch.device("meta"):
            model = space.build(arch)
        assert p == sum(t.numel() for t in model.parameters())
    np.testing.assert_allclose(flops, flops_table(space).predict(np.array(archs)))


def test_synflow_is_sum_of_abs_weights_times_gradients():
    # one linear layer, ones input: R = sum |w|, dR/dw = 1, so synflow = sum |w|
    from latnas.search.scorers.synflow import synflow

    torch.manual_seed(0)
    lin = nn.Linear(5, 3, bias=False)
    expected = float(lin.weight.detach().abs().sum())
    assert synflow(nn.Sequential(lin), (5,)) == pytest.approx(expected)
    # BatchNorm is removed (the zero-cost-proxies default): same score with a BN after a conv
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 2, 1, bias=False)
    with_bn = synflow(nn.Sequential(conv, nn.BatchNorm2d(2)), (2, 3, 3))
    torch.manual_seed(0)
    assert with_bn == pytest.approx(synflow(nn.Sequential(nn.Conv2d(2, 2, 1, bias=False)), (2, 3, 3)))


def test_synflow_ranks_nb201_extremes(small):
    space, _ = small["nb201"]
    s = make_scorer("synflow", ScorerConfig(space=space, seed=0))([(0,) * 6, (1,) * 6, (3,) * 6])
    assert s[0] < s[1] < s[2]  # cut-off cells: no flow through the cells' convs; all-3x3: the most


def test_naswot_kernel_matches_hand_computation():
    from latnas.search.scorers.naswot import SINGULAR_SCORE, hamming_kernel_logdet

    x = torch.tensor([[1.0, -1.0, 2.0], [-1.0, -1.0, 3.0], [1.0, 1.0, -2.0]])
    c = (x > 0).double()
    k = c @ c.T + (1 - c) @ (1 - c).T  # = [[3,2,1],[2,3,0],[1,0,3]]
    expected = np.linalg.slogdet(k.numpy())[1]
    assert hamming_kernel_logdet(nn.Sequential(nn.ReLU()), x) == pytest.approx(expected)
    # two ReLUs see the same codes: kernels add up
    assert hamming_kernel_logdet(nn.Sequential(nn.ReLU(), nn.ReLU()), x) == pytest.approx(np.linalg.slogdet(2 * k.numpy())[1])
    same = torch.ones(3, 3)
    assert hamming_kernel_logdet(nn.Sequential(nn.ReLU()), same) == SINGULAR_SCORE


def test_naswot_cut_off_nb201_cell_scores_lowest(small):
    from latnas.search.scorers.naswot import SINGULAR_SCORE

    space, data = small["nb201"]
    # no ReLU sees the images: the cells hold no conv and cut the stem off from the rest
    s = make_scorer("naswot", ScorerConfig(space=space, data=data, options={"batch_size": 16}))([(1, 1, 1, 0, 0, 0), (3,) * 6])
    assert s[0] == SINGULAR_SCORE < s[1]


def test_scorer_options_are_checked(small):
    space, data = small["nb201"]
    for name in ("rwe", "synflow", "naswot"):
        with pytest.raises(DataError, match="unknown options"):
            make_scorer(name, ScorerConfig(space=space, data=data, options={"bogus": 1}))


def test_table_errors_are_one_line(small, tmp_path):
    space, _ = small["fbnet"]
    archs = space.random_archs(3, rng=4)

    def build(**kw):
        return make_scorer("table", ScorerConfig(space=space, **kw))

    path = _table_csv(tmp_path, space, archs[:2], [1.0, 2.0])
    scorer = build(table=str(path), column="acc")
    missing = space.format_arch(archs[2])
    with pytest.raises(DataError, match=missing):  # never a zero for an unknown arch
        scorer([archs[0], archs[2]])
    cases = [
        (dict(table=str(path), column="top1"), "no score column 'top1'"),
        (dict(table=str(path), column="acc", arch_column="genotype"), "no arch column 'genotype'"),
        (dict(table=str(tmp_path / "nope.csv"), column="acc"), "does not exist"),
        (dict(column="acc"), "needs a CSV"),
        (dict(table=str(_table_csv(tmp_path, space, archs[:2], [1.0, "nan"])), column="acc"), "nan"),
        (dict(table=str(_table_csv(tmp_path, space, archs[:2], [1.0, "x"])), column="acc"), "not a number"),
        (dict(table=str(_table_csv(tmp_path, space, [archs[0], archs[0]], [1.0, 2.0])), column="acc"), "listed twice"),
        (dict(table=str(_table_csv(tmp_path, space, archs[:1], [1.0], arch_column="model")), column="acc"), "no arch column"),
        (dict(table=str(_table_csv(tmp_path, space, archs[:1], [1.0], fmt=lambda a: "123")), column="acc"), "line 2"),
    ]
    for kw, message in cases:
        with pytest.raises(DataError, match=message) as exc:
            build(**kw)
        assert "\n" not in str(exc.value)
    explicit = _table_csv(tmp_path, space, archs, [1.0, 2.0, 3.0], arch_column="model")
    np.testing.assert_array_equal(build(table=str(explicit), column="acc", arch_column="model")(archs), [1.0, 2.0, 3.0])


def test_table_reads_nb201_strings_and_the_shipped_table(tmp_path):
    space = get_space("nb201")
    archs = [(3, 3, 4, 1, 3, 1), (0,) * 6]
    path = _table_csv(tmp_path, space, archs, [93.66, 10.0], arch_column="arch_str", fmt=space.arch_str)
    np.testing.assert_array_equal(make_scorer("table", ScorerConfig(space=space, table=str(path), column="acc"))(archs), [93.66, 10.0])
    if not NB201_CSV.is_file():
        pytest.skip("shared NAS-Bench-201 table not found")
    scorer = make_scorer("table", ScorerConfig(space=space, table=str(NB201_CSV), column="c10_test_acc"))
    assert scorer([archs[0]])[0] == pytest.approx(93.66)  # row 1 of the table
    assert len(scorer.table) == 15_625
