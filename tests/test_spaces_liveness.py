"""Live vs dead layers (``SearchSpace.live_layers`` / ``live_mask`` / ``cut_off``) on hand-made cells."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from latnas.schema.blocks.nb201 import NB201_EDGES
from latnas.schema.spaces import get_space

NB201_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201" / "nb201_accuracy_latency.csv"

T, F = True, False


@pytest.fixture(scope="module")
def nb201():
    return get_space("nb201")


@pytest.mark.parametrize("arch, live, cut", [
    ("333333", (T, T, T, T, T, T), False),
    ("000000", (F, F, F, F, F, F), True),   # every edge none
    ("330000", (F, F, F, F, F, F), True),   # nodes 1, 2 computed, nothing reaches node 3
    ("303000", (F, F, F, F, F, F), True),   # 0 -> 1 -> 2, but node 2 feeds nothing
    ("000333", (F, F, F, T, F, F), False),  # only 0 -> 3; edges from unreachable nodes 1, 2 are dead
    ("333300", (F, F, F, T, F, F), False),  # nodes 1, 2 computed but never read
    ("333003", (T, T, T, F, F, T), False),  # 0 -> 1 -> 2 -> 3 and 0 -> 2 -> 3
    ("400041", (T, F, F, F, T, F), False),  # 0 -> 1 -> 3; the skip 2 -> 3 reads a dead node
    ("030303", (F, T, F, T, F, T), False),
    ("100010", (T, F, F, F, T, F), False),  # skips are live ops too
])
def test_nb201_hand_made_cells(nb201, arch, live, cut):
    assert nb201.live_layers(arch) == live
    assert bool(nb201.cut_off(np.array([nb201.parse_arch(arch)]))[0]) is cut
    # the benchmark's own string gives the same answer
    assert nb201.live_layers(nb201.arch_str(arch)) == live


def _paths_live(arch) -> tuple[list[bool], bool]:
    """Independent check: enumerate every node path 0 -> 3 over non-none edges."""
    edge_of = {(frm, to): k for k, (to, frm) in enumerate(NB201_EDGES)}
    live = [False] * len(NB201_EDGES)
    any_path = False
    for mid in itertools.chain.from_iterable(itertools.combinations((1, 2), r) for r in range(3)):
        nodes = (0, *mid, 3)
        ks = [edge_of[(a, b)] for a, b in zip(nodes[:-1], nodes[1:])]
        if all(arch[k] != 0 for k in ks):
            any_path = True
            for k in ks:
                live[k] = True
    return live, not any_path


def test_nb201_every_arch_matches_path_enumeration(nb201):
    archs = np.array(list(itertools.product(range(5), repeat=6)), dtype=np.int64)
    mask, cut = nb201.live_mask(archs), nb201.cut_off(archs)
    assert mask.shape == (15625, 6) and cut.shape == (15625,)
    for a, m, c in zip(archs[::7], mask[::7], cut[::7]):
        want, want_cut = _paths_live(a)
        assert m.tolist() == want and bool(c) is want_cut, a
    # a cut-off arch has no live edge, and an arch with no live edge is cut off
    np.testing.assert_array_equal(cut, ~mask.any(axis=1))
    assert not mask[archs == 0].any()  # `none` is never live
    assert 0.0 < cut.mean() < 0.3 and 0.0 < (~mask & (archs != 0)).any(axis=1).mean() < 1.0


def test_chain_space_everything_live():
    fb = get_space("fbnet")
    archs = np.array(fb.random_archs(20, 0), dtype=np.int64)
    assert fb.live_mask(archs).all() and not fb.cut_off(archs).any()
    assert all(fb.live_layers(archs[0]))


@pytest.mark.data
@pytest.mark.skipif(not NB201_CSV.is_file(), reason="shared NAS-Bench-201 table not found")
def test_pixel3_folds_cut_off_archs(nb201):
    """The public pixel3 column (a TFLite-style runtime) measures cut-off archs as near-constant µs."""
    from predictors.data import load_arch_table

    table = load_arch_table(NB201_CSV, nb201)
    y, cut = table.column("pixel3_ms"), nb201.cut_off(table.archs)
    assert np.median(y[cut]) < 0.1 * np.median(y[~cut])
    y_gpu = table.column("1080ti_1_ms")
    assert np.median(y_gpu[cut]) > 0.3 * np.median(y_gpu[~cut])  # a GPU runs them
