"""RWE's last layer: the closed-form ridge (default) and the paper's softmax head trained by SGD."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from latnas.schema.errors import DataError, LatnasError
from latnas.search.base import SearchData
from latnas.search.rwe import RWEConfig, RWEScorer, linear_probe_accuracy, rwe_key, softmax_probe_accuracy
from latnas.schema.spaces import get_space

torch.set_num_threads(1)


def blobs(n=120, d=6, classes=3, sep=3.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, d)) * sep
    y = rng.integers(0, classes, size=n)
    return centres[y] + rng.normal(size=(n, d)), y


def test_softmax_head_separates_blobs_and_is_deterministic():
    x, y = blobs(seed=0)
    rng = np.random.default_rng(2)
    idx = rng.permutation(len(x))
    tr, va = idx[:80], idx[80:]
    a = softmax_probe_accuracy(x[tr], y[tr], x[va], y[va], epochs=20, lr=0.1)
    b = softmax_probe_accuracy(x[tr], y[tr], x[va], y[va], epochs=20, lr=0.1)
    assert a == b
    assert a > 0.9
    # shuffled labels: nothing to learn, near chance
    y_shuf = rng.permutation(y)
    assert softmax_probe_accuracy(x[tr], y_shuf[tr], x[va], y_shuf[va], epochs=20) < 0.7


def test_softmax_head_with_labels_not_starting_at_zero_and_one_class():
    x, y = blobs(classes=2, seed=3)
    y = np.where(y == 0, 5, 9)
    acc = softmax_probe_accuracy(x[:80], y[:80], x[80:], y[80:], epochs=10)
    assert acc > 0.8
    assert softmax_probe_accuracy(x[:10], np.full(10, 4), x[10:14], np.array([4, 4, 1, 4])) == 0.75


def test_heads_agree_on_easy_features():
    x, y = blobs(n=200, seed=4)
    ridge = linear_probe_accuracy(x[:150], y[:150], x[150:], y[150:])
    soft = softmax_probe_accuracy(x[:150], y[:150], x[150:], y[150:], epochs=20)
    assert ridge > 0.9 and soft > 0.9


def test_config_validates_head_and_numbers():
    with pytest.raises(DataError, match="head"):
        RWEConfig(head="svm")
    with pytest.raises(DataError, match="sgd_epochs"):
        RWEConfig(sgd_epochs=0)
    with pytest.raises(LatnasError, match="sgd_lr"):
        RWEConfig(sgd_lr="fast")
    cfg = RWEConfig(head="softmax", sgd_epochs="5", sgd_lr="0.05")
    assert cfg.sgd_epochs == 5 and cfg.sgd_lr == 0.05
    assert RWEConfig().head == "ridge"  # default unchanged


def test_scorer_softmax_head_scores_archs_and_key_names_the_head():
    sp = get_space("nb201", resolution=8)
    g = torch.Generator().manual_seed(0)
    proto = torch.randn(4, 3, 8, 8, generator=g)
    y = torch.arange(60) % 4
    x = proto[y] + 0.3 * torch.randn(60, 3, 8, 8, generator=g)
    data = SearchData(x[:40], y[:40], x[40:], y[40:], 4, "protos")
    scorer = RWEScorer(sp, data, RWEConfig(head="softmax", sgd_epochs=5))
    s = scorer([(3, 3, 3, 3, 3, 3), (1, 1, 1, 1, 1, 1)])
    assert s.shape == (2,) and np.all((s >= 0) & (s <= 1))
    assert s[0] > 0.5  # random conv features of class prototypes are separable
    assert np.array_equal(s, RWEScorer(sp, data, RWEConfig(head="softmax", sgd_epochs=5))([(3, 3, 3, 3, 3, 3), (1, 1, 1, 1, 1, 1)]))
    assert rwe_key(data, 0) != rwe_key(data, 0, "softmax")
    assert rwe_key(data, 0) == rwe_key(data, 0, "ridge")
