"""`latnas export`: build an arch of a space, fuse it, export it, check parity, write sidecars."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from latnas.cli.validate import MAX_BATCH, MAX_SEED, check_input_file, check_output
from latnas.schema.errors import LatnasError


def _fmt_parity(result) -> str:
    p = result.parity
    if p is None:
        return "-"
    return f"{p.rel_diff:.1e} {'ok' if p.ok else 'FAIL'}"


def _fmt_size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.2f} MiB"


def print_report(report) -> None:
    rows = [("format", "path", "parity (rel)", "nodes", "size")]
    for r in report.results:
        nodes = "-" if r.nodes is None else str(r.nodes)
        if r.format == "onnx" and report.fused and report.nodes_unfused is not None:
            nodes = f"{r.nodes} (unfused {report.nodes_unfused})"
        elif r.format == "executorch":
            nodes = f"{r.nodes} ({r.details.get('delegate_calls', 0)} xnnpack)"
        elif r.format == "tensorrt":
            nodes = f"{r.nodes} layers"
        rows.append((r.format, str(r.path), _fmt_parity(r), nodes, _fmt_size(r.size_bytes)))
    for fmt, reason in report.skipped.items():
        rows.append((fmt, "skipped", "-", "-", "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    if report.fusion_parity is not None:
        p = report.fusion_parity
        print(f"fusion parity (torch fused vs multi-branch, rel): {p.rel_diff:.1e} {'ok' if p.ok else 'FAIL'}")


def register(app: typer.Typer) -> None:
    """Add ``latnas export`` to ``app``."""

    @app.command("export")
    def export(
        arch: str = typer.Option(..., "--arch", help="Arch string of the space (digits, or comma-separated for repnas)."),
        out: Path = typer.Option(..., "-o", "--out", help="Output directory."),
        space: str = typer.Option("fbnet", "--space", help="Search space: fbnet, repnas, proxyless."),
        formats: str = typer.Option("onnx", "--format", help="Comma-separated: onnx,executorch,tensorrt."),
        checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="State dict (.pt), loaded with weights_only=True."),
        no_fuse: bool = typer.Option(False, "--no-fuse", help="Export the multi-branch model as is."),
        batch: int = typer.Option(1, "--batch", min=1, max=MAX_BATCH, help="Batch size of the exported input."),
        precision: str = typer.Option("fp32", "--precision", help="TensorRT precision: fp32 or fp16 (strongly typed)."),
        seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED, help="Seed of the random weights (no checkpoint) and the parity input."),
    ) -> None:
        """Export an arch to ONNX / ExecuTorch (.pte, XNNPACK) / TensorRT with parity checks and JSON sidecars.

        TensorRT without TensorRT or a GPU is skipped with a warning, or is an
        error when it is the only format requested.
        """
        import torch

        from latnas.export import ExportError, export_model, load_checkpoint
        from latnas.export.common import check_finite_output
        from latnas.export.pipeline import parse_formats
        from latnas.schema.spaces import get_space

        names = parse_formats(formats)
        if precision not in ("fp32", "fp16"):
            raise ExportError(f"unknown precision {precision!r} (use fp32 or fp16)")
        check_output(out, "-o", kind="dir")  # before building, fusing and lowering
        if checkpoint is not None:
            check_input_file(checkpoint, "--checkpoint")
        sp = get_space(space, batch=batch)
        arch_t = sp.parse_arch(arch)
        torch.manual_seed(seed)
        model = sp.build(arch_t)
        if checkpoint is not None:
            model = load_checkpoint(model, checkpoint)
        model.eval()
        example = torch.randn(batch, *sp.input_shape, generator=torch.Generator().manual_seed(seed))
        if checkpoint is not None:
            check_finite_output(model, example, f"checkpoint {checkpoint}")  # before any file is written
        stem = f"{space}_{'fused' if not no_fuse else 'unfused'}"
        meta = {
            "space": space,
            "arch": sp.format_arch(arch_t),
            "checkpoint": str(checkpoint) if checkpoint else None,
            "seed": seed,
        }
        report = export_model(model, example, out, names, fuse=not no_fuse, stem=stem, meta=meta,
                              precision=precision)
        for fmt, reason in report.skipped.items():
            print(f"warning: {fmt} skipped: {reason}", file=sys.stderr)
        print_report(report)
        if not report.ok:
            bad = [r.format for r in report.results if r.parity is not None and not r.parity.ok]
            if report.fusion_parity is not None and not report.fusion_parity.ok:
                bad.insert(0, "fusion")
            raise ExportError(f"parity check failed for {', '.join(bad)}")


__all__ = ["register", "LatnasError"]
