"""Live and dead ops as predictor features, and source models fit on them.

In a space with parallel paths (``nb201``) an op whose edge lies on no
input-to-output path is *dead* (see :meth:`SearchSpace.live_mask`); when no
path is left at all the arch is *cut off* and the network's output is a
constant. Runtimes differ: a GPU framework runs every op, a TFLite-style
runtime folds dead ops (and a cut-off network) into constants. A plain
one-hot cannot tell the two, so a source fit on a folding device is biased
and a target's few samples cannot say which kind of device it is.

* :func:`live_dead_design` gives per-(layer, choice) columns three times: for
  live ops, for dead ops, and for the ops of a cut-off arch, plus a cut-off
  indicator;
* :class:`LiveDeadRidge` is the ridge (ms target, rows weighted by relative
  error, alpha by exact LOO) on that design, used as a transfer source model;
* :func:`source_pieces` splits each source (a :class:`LiveDeadRidge`, a plain
  linear :class:`~predictors.models.OneHotRidge`, or the analytic FLOPs
  table) into three per-arch pieces: live ops (+ fixed cost), dead ops, and a
  cut-off arch. The target's samples weigh them (see
  :mod:`predictors.transfer_fit`): a device that folds dead ops gives the
  second piece no weight.
"""
from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

from latnas.schema.errors import DataError, PredictorFileError
from predictors.base import as_list, state_float, state_vector
from predictors.features import layer_cost_tables, onehot, onehot_feature_names
from predictors.linear import fit_additive
from predictors.models import DEFAULT_ALPHAS, ArchPredictor, _y


def live_dead_design(space, archs: np.ndarray) -> np.ndarray:
    """``(n, 3 * L * C + 1)``: one-hot of live ops and of dead ops of archs that are not cut
    off, one-hot of the ops of cut-off archs, and the cut-off indicator."""
    hot = onehot(archs, space.n_layers, space.n_choices)
    live = np.repeat(space.live_mask(archs), space.n_choices, axis=1)
    cut = space.cut_off(archs)[:, None]
    return np.hstack([hot * (live & ~cut), hot * (~live & ~cut), hot * cut, cut.astype(np.float64)])


class LiveDeadRidge(ArchPredictor):
    """Additive ridge (ms) with separate costs for live and dead ops and for a cut-off network.

    Archs with a live path and cut-off archs are fit separately (two ridges).
    On a chain space every op is live and this is the plain one-hot ridge.
    ``relative`` weights rows by ``1 / y**2`` (chosen against unweighted by
    LOO, as :func:`~predictors.linear.fit_additive` does).
    """

    def __init__(self, space: str = "nb201", relative: bool = True, alphas=DEFAULT_ALPHAS):
        self.space = space
        self.relative = relative
        self.alphas = alphas

    def fit(self, X, y):
        archs, y = self._archs(X), _y(y)
        if len(y) < 2:
            raise DataError("a live/dead source model needs at least 2 rows")
        sp, n = self._space(), self._n_onehot()
        cut = sp.cut_off(archs)
        if (~cut).sum() < 2:
            raise DataError("a live/dead source model needs at least 2 rows whose archs are not cut off")
        # two fits: archs with a live path (live / dead op costs), and cut-off archs on their own (a
        # runtime may fold those to a constant in µs, which relative weights against the others would ignore)
        x = live_dead_design(sp, archs)
        fit, _ = fit_additive(x[~cut, :2 * n], y[~cut], "linear", self.alphas, relative=self.relative, trim=False)
        self.live_coef_ = fit.coef[:n].astype(np.float64)
        self.dead_coef_ = fit.coef[n:2 * n].astype(np.float64)
        self.intercept_, self.alpha_ = float(fit.intercept), float(fit.alpha)
        if cut.sum() >= 2:
            cfit, _ = fit_additive(x[cut, 2 * n:3 * n], y[cut], "linear", self.alphas, relative=self.relative, trim=False)
            self.cut_op_coef_, self.cut_coef_ = cfit.coef.astype(np.float64), float(cfit.intercept) - self.intercept_
        else:  # no cut-off arch measured: it runs its ops like dead ones
            self.cut_op_coef_, self.cut_coef_ = self.dead_coef_.copy(), 0.0
        self.n_features_in_ = sp.n_layers
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "live_coef_")
        archs = self._archs(X)
        coef = np.concatenate([self.live_coef_, self.dead_coef_, self.cut_op_coef_, [self.cut_coef_]])
        return live_dead_design(self._space(), archs) @ coef + self.intercept_

    @property
    def feature_names(self) -> list[str]:
        names = onehot_feature_names(self._space())
        return [f"{kind}_{n}" for kind in ("live", "dead", "cut") for n in names] + ["cut_off"]

    def to_state(self) -> dict:
        check_is_fitted(self, "live_coef_")
        return {"live_coef": as_list(self.live_coef_), "dead_coef": as_list(self.dead_coef_),
                "cut_op_coef": as_list(self.cut_op_coef_), "cut_coef": self.cut_coef_, "intercept": self.intercept_, "alpha": self.alpha_}

    def set_state(self, state, files):
        n = self._n_onehot()
        self.live_coef_ = state_vector(state, "live_coef", n)
        self.dead_coef_ = state_vector(state, "dead_coef", n)
        self.cut_op_coef_ = state_vector(state, "cut_op_coef", n)
        self.cut_coef_, self.intercept_ = state_float(state, "cut_coef"), state_float(state, "intercept")
        self.alpha_ = state_float(state, "alpha")
        return self._restored()

    def to_latency_table(self, space):
        """Exact on a space without dead ops (a chain); refused on a cell space, where it is not additive."""
        from predictors.compile import linear_table

        check_is_fitted(self, "live_coef_")
        probe = np.array(space.random_archs(256, 0, unique=False), dtype=np.int64)
        if not space.live_mask(probe).all() or space.cut_off(probe).any():
            raise PredictorFileError(f"a live/dead ridge on {space.name!r} is not additive over layers "
                                     "(dead ops depend on other edges); it cannot be compiled exactly")
        return linear_table(space, self.live_coef_.reshape(space.n_layers, space.n_choices), self.intercept_,
                            {"predictor": type(self).__name__})


def source_tables(model, space) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """``(live, dead, cut_ops, cut_fixed, fixed)`` of one source model: ``(L, C)`` per-op costs (ms)
    of live ops, of dead ops and of the ops of a cut-off arch, the fixed cost of a cut-off arch
    and of any other (a one-hot ridge: the same table three times, one fixed cost)."""
    if isinstance(model, LiveDeadRidge):
        check_is_fitted(model, "live_coef_")
        shape = (space.n_layers, space.n_choices)
        return (model.live_coef_.reshape(shape), model.dead_coef_.reshape(shape), model.cut_op_coef_.reshape(shape),
                float(model.intercept_ + model.cut_coef_), float(model.intercept_))
    if getattr(model, "log_target_", True) or not hasattr(model, "coef_"):
        raise DataError("transfer sources must be linear-target OneHotRidge or LiveDeadRidge models")
    tab = np.asarray(model.coef_, dtype=np.float64).reshape(space.n_layers, space.n_choices)
    return tab, tab, tab, float(model.intercept_), float(model.intercept_)


def flops_tables(space) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """The analytic FLOPs "source" in :func:`source_tables` form (MFLOPs; dead ops count)."""
    flops, _, f0, _ = layer_cost_tables(space)
    return flops, flops, flops, float(f0), float(f0)


#: the pieces each source is split into; a target weighs them (>= 0) per source
PIECES = ("live", "dead", "cut")


def pieces(tables, space, archs: np.ndarray, live: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """``(n, 3 + G + 1)``: a source's cost of the live ops (+ fixed), of the dead ops, and of a cut-off
    arch; then the per-stage sums of its live ops (G stages) and its fixed cost (0 when cut off).

    Each of the first three is 0 where it does not apply (a cut-off arch has
    only the third), so their sum is the source's own prediction.
    """
    live_t, dead_t, cut_t, cut_fixed, fixed = tables
    rows = np.arange(space.n_layers)
    live_ops = np.where(cut[:, None], 0.0, live_t[rows, archs] * live)
    live_part = np.where(cut, 0.0, fixed) + live_ops.sum(axis=1)
    dead_part = np.where(cut, 0.0, (dead_t[rows, archs] * ~live).sum(axis=1))
    cut_part = np.where(cut, cut_fixed + cut_t[rows, archs].sum(axis=1), 0.0)
    stages = np.array([slot.stage for slot in space.layers])
    per_stage = [live_ops[:, stages == g].sum(axis=1) for g in np.unique(stages)]
    return np.column_stack([live_part, dead_part, cut_part, *per_stage, np.where(cut, 0.0, fixed)])


def source_pieces(sources: dict, space, archs: np.ndarray, use_flops: bool = True) -> tuple[list[str], np.ndarray]:
    """Names and the ``(n, S, P)`` :func:`pieces` of every source (and FLOPs, when ``use_flops``)."""
    tabs = [source_tables(m, space) for m in (sources or {}).values()]
    names = list(sources or {})
    if use_flops:
        tabs.append(flops_tables(space))
        names.append("total_mflops")
    if not tabs:
        raise DataError("transfer needs at least one source model")
    live, cut = space.live_mask(archs), space.cut_off(archs)
    return names, np.stack([pieces(t, space, archs, live, cut) for t in tabs], axis=1)
