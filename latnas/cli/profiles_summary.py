"""`latnas profiles summary`: rows per device, backend and kind, with the between-session spread.

Kept readable at 80 columns: the table has the short columns only (the
backend name never wraps) and each fingerprint's device is one line under
the table, not a wide column.
"""
from __future__ import annotations

import math
import statistics
from typing import Any, Iterable


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


def summary_rows(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """One dict per (fingerprint, backend, kind): counts, median of medians, sessions, spread, noisy, single-session."""
    groups: dict[tuple[str, str, str], list] = {}
    for m in rows:
        groups.setdefault((m.fingerprint, m.backend, m.kind), []).append(m)
    out = []
    for (fp, be, kind), ms in sorted(groups.items()):
        spreads = [m.spread for m in ms]
        out.append({
            "fingerprint": fp, "backend": be, "kind": kind, "rows": len(ms),
            "median_ms": statistics.median(m.stats.median_ms for m in ms),
            "sessions_per_row": statistics.mean(len(m.sessions) for m in ms),
            "spread_median": statistics.median(spreads), "spread_max": max(spreads),
            "noisy": sum(bool(m.stats.noisy) for m in ms),
            "single": sum(len(m.sessions) <= 1 for m in ms),
            "legacy": sum(m.protocol == "legacy" for m in ms),
        })
    return out


def _device(info: dict[str, Any]) -> str:
    return str(info.get("gpu") or info.get("cpu") or "?") + f", {info.get('threads', '?')} thr"


def print_summary(rows: Iterable[Any], fingerprints: dict[str, dict[str, Any]], console=None) -> None:
    """Print one table per device fingerprint (fits 80 columns; the backend name never wraps) and a legend."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    by_fp: dict[str, list[dict[str, Any]]] = {}
    for r in summary_rows(rows):
        by_fp.setdefault(r["fingerprint"], []).append(r)
    if not by_fp:
        console.print("no measurements in this store", markup=False, highlight=False)
        return
    for fp, group in by_fp.items():
        table = Table(title=f"device {fp}: {_device(fingerprints.get(fp, {}))}", title_justify="left",
                      box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("backend", no_wrap=True)
        table.add_column("kind", no_wrap=True)
        for name in ("rows", "ms", "sess", "spread", "noisy", "1-sess"):
            table.add_column(name, justify="right", no_wrap=True)
        for r in group:
            table.add_row(r["backend"], r["kind"], str(r["rows"]), _fmt_ms(r["median_ms"]), f"{r['sessions_per_row']:.1f}",
                          f"{100 * r['spread_median']:.1f}%/{100 * r['spread_max']:.0f}%", str(r["noisy"]),
                          f"{r['single']}" + (f" ({r['legacy']} old)" if r["legacy"] else ""))
        console.print(table)
    console.print("ms: median over rows of each row's latency; sess: sessions per row; spread: median/max over rows "
                  "of (max-min)/min of a row's session medians; noisy: rows whose two best sessions disagree; "
                  "1-sess: single-session rows (old: written before sessions)", markup=False, highlight=False)
