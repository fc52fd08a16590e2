"""PNG plots of predictor accuracy (matplotlib, Agg backend, no display needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def accuracy_plots(y_true, y_pred, folder: str | Path, title: str = "") -> list[Path]:
    """Write ``pred_vs_measured.png`` and ``error_hist.png`` into ``folder``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    y, p = np.asarray(y_true, float), np.asarray(y_pred, float)
    out = []

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(y, p, s=4, alpha=0.4)
    lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
    xs = np.array([lo, hi])
    ax.plot(xs, xs, "k-", lw=1, label="y = x")
    for f, style in ((0.05, "--"), (0.10, ":")):
        ax.plot(xs, xs * (1 + f), "r" + style, lw=0.8, label=f"±{int(f * 100)}%")
        ax.plot(xs, xs * (1 - f), "r" + style, lw=0.8)
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(title or "predicted vs measured")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    out.append(folder / "pred_vs_measured.png")
    fig.savefig(out[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    err = 100.0 * (p / y - 1.0)
    ax.hist(err, bins=60)
    for v in (-5, 5):
        ax.axvline(v, color="r", ls="--", lw=0.8)
    ax.set_xlabel("relative error (%)")
    ax.set_ylabel("archs")
    ax.set_title(title or "prediction error")
    fig.tight_layout()
    out.append(folder / "error_hist.png")
    fig.savefig(out[-1], dpi=110)
    plt.close(fig)
    return out
