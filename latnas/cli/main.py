"""Entry point of the ``latnas`` command.

Each command group lives in its own module with a ``register(app)`` function;
this module only assembles them and is the one place bad input becomes a
message: :class:`LatnasError`, click's usage errors (unknown option, bad type,
out-of-range number) and OS errors on user paths all print ONE line,
``error: <message>`` (truncated to :data:`MAX_MESSAGE` characters), and exit 2;
a run in which nothing succeeded exits 1. No traceback reaches the user; set
``LATNAS_DEBUG=1`` to see one for an unexpected failure.
"""
from __future__ import annotations

import importlib
import os
import sys

import typer

try:  # typer vendors its own click; its exceptions are the ones raised
    from typer._click import exceptions as click_exc
except ImportError:  # older typer on the real click
    from click import exceptions as click_exc

from latnas.schema.errors import LatnasError

MAX_MESSAGE = 300  # characters of an error message shown (a 1 MB bad value is not echoed back)

COMMAND_MODULES = (
    "latnas.cli.profile_cmd",
    "latnas.cli.agent_cmd",
    "latnas.cli.predict_cmd",
    "latnas.cli.export_cmd",
    "latnas.cli.search_cmd",
    "latnas.cli.accuracy_cmd",
    "latnas.cli.demo_cmd",
    "latnas.cli.kernels_cmd",
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


def one_line(message: object, limit: int = MAX_MESSAGE) -> str:
    """``message`` on one line, printable, at most ``limit`` characters."""
    text = " ".join(str(message).split())
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error(message: object, code: int) -> int:
    sys.stdout.flush()
    print(f"error: {one_line(message)}", file=sys.stderr)
    return code


def _usage_message(exc: click_exc.ClickException) -> str:
    """click's message without the usage box; names the command for a usage error."""
    msg = exc.format_message()
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click_exc.UsageError) and ctx is not None and ctx.command_path:
        return f"{ctx.command_path.removeprefix('latnas').strip() or 'latnas'}: {msg}"
    return msg


MAX_ARGUMENT = 10_000  # characters; an arch, a path or a KEY=VALUE is far shorter


def _bad_argument(args: list[str]) -> str | None:
    """Arguments no command means: empty (``-o ''``: Path('') would silently become '.'),
    huge (a 1 MB line is not an option value), or holding control characters."""
    for i, tok in enumerate(args):
        prev = args[i - 1] if i and args[i - 1].startswith("-") else None
        where = f"for {prev}" if prev else f"argument {i + 1}"
        if tok == "":
            return f"empty value {where}" if prev else "empty argument"
        if tok.startswith("--") and tok.endswith("=") and len(tok) > 3:
            return f"empty value for {tok[:-1]}"
        if len(tok) > MAX_ARGUMENT:
            return f"value {where} is {len(tok)} characters long (limit {MAX_ARGUMENT})"
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in tok):
            return f"value {where} contains control characters"
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (used by tests and the console script)."""
    _register_all()
    args = list(sys.argv[1:] if argv is None else argv)
    bad = _bad_argument(args)
    if bad:
        return _error(bad, 2)
    try:
        rv = app(args=args, prog_name="latnas", standalone_mode=False)
    except click_exc.NoArgsIsHelpError as exc:  # `latnas`, `latnas profiles`: show the help
        exc.show()
        return 2
    except click_exc.ClickException as exc:  # usage errors, bad parameter values: one line, not a box
        return _error(_usage_message(exc), 2)
    except typer.Abort:
        return _error("aborted", 1)
    except LatnasError as exc:
        return _error(exc, exc.exit_code)
    except KeyboardInterrupt:
        return _interrupted()
    except RecursionError:
        return _error("input nested too deeply", 2)
    except (OSError, UnicodeError) as exc:  # a user path or file that cannot be used
        detail = getattr(exc, "strerror", None) or exc
        name = getattr(exc, "filename", None)
        return _error(f"{name}: {detail}" if name else detail, 2)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except Exception as exc:  # a bug, not bad input: still one line; LATNAS_DEBUG=1 shows the traceback
        if os.environ.get("LATNAS_DEBUG"):
            raise
        return _error(f"unexpected {type(exc).__name__}: {exc} (set LATNAS_DEBUG=1 for a traceback)", 1)
    if rv == 130 and not isinstance(rv, bool):  # typer turns Ctrl-C into Exit(130)
        return _interrupted()
    return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0


def _interrupted() -> int:
    print("interrupted: finished results are saved; run the same command again to resume", file=sys.stderr)
    return 130


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
