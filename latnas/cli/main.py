"""Entry point of the ``latnas`` command.

Each command group lives in its own module with a ``register(app)`` function;
this module only assembles them and turns :class:`LatnasError` into a one-line
``error: ...`` message and a non-zero exit instead of a traceback.
"""
from __future__ import annotations

import importlib
import sys

import typer

from latnas.errors import LatnasError

COMMAND_MODULES = (
    "latnas.cli.profile_cmd",
    "latnas.cli.agent_cmd",
    "latnas.cli.predict_cmd",
    "latnas.cli.export_cmd",
    "latnas.cli.search_cmd",
    "latnas.cli.demo_cmd",
)

app = typer.Typer(
    name="latnas",
    help="Hardware-aware NAS: profile real latency, train predictors, search under a budget, export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Hardware-aware NAS: profile real latency, train predictors, search under a budget, export."""


@app.command()
def version() -> None:
    """Print the latnas version and the versions of its main libraries."""
    from importlib import metadata

    import latnas

    print(f"latnas {latnas.__version__}")
    for dist in ("torch", "onnx", "onnxruntime", "executorch", "xgboost-cpu", "scikit-learn", "pymoo", "tensorrt"):
        try:
            print(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            print(f"{dist} not installed")


_registered: list[str] = []


def _register_all() -> None:
    """Add every group's commands once (main() may run many times in one process)."""
    for name in COMMAND_MODULES:
        if name not in _registered:
            importlib.import_module(name).register(app)
            _registered.append(name)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (used by tests and the console script)."""
    _register_all()
    try:
        app(args=argv, prog_name="latnas")
    except SystemExit as exc:  # typer/click exit, usage errors included (code 2)
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except LatnasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished results are saved; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
