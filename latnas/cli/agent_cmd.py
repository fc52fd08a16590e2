"""`latnas agent ...`: run a remote profiling agent, or ask one what it offers."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from latnas.cli.validate import MAX_PORT, MAX_TIMEOUT_S

agent_app = typer.Typer(
    help="Remote profiling agent: serve on the device to measure, query it from elsewhere.",
    no_args_is_help=True,
)

PS_WARNING = "warning: --token is visible to other users in `ps`; prefer --token-file or $LATNAS_AGENT_TOKEN"


@agent_app.command("serve")
def serve_cmd(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on. Loopback by default; any other host prints a warning."
    ),
    port: int = typer.Option(8765, "--port", min=0, max=MAX_PORT, help="TCP port (0 picks a free one)."),
    token_file: Optional[Path] = typer.Option(
        None, "--token-file", help="File whose first line is the bearer token clients must send (>= 16 chars)."
    ),
    token: Optional[str] = typer.Option(
        None,
        "--token",
        help="Bearer token on the command line (visible in `ps`: prefer --token-file). "
        "Default: $LATNAS_AGENT_TOKEN, else a random one printed once.",
    ),
    backend: str = typer.Option("onnxruntime", "--backend", help="Backend used when a request names none."),
) -> None:
    """Serve profiling requests over authenticated HTTP/JSON until interrupted."""
    from profilers import remote

    server, lines = remote.prepare_serve(host, port, token, backend, token_file=token_file)  # a bad token: one error line
    if token is not None:
        typer.echo(PS_WARNING, err=True)
    for line in lines:
        typer.echo(line, err=True)
    remote.run_until_interrupted(server)


@agent_app.command("info")
def info_cmd(
    url: Optional[str] = typer.Option(None, "--url", help="Agent URL, e.g. http://127.0.0.1:8765 (default: $LATNAS_AGENT_URL)."),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="File whose first line is the agent token."),
    token: Optional[str] = typer.Option(None, "--token", help="Agent token (visible in `ps`; default: $LATNAS_AGENT_TOKEN)."),
    timeout_s: float = typer.Option(10.0, "--timeout", min=0.1, max=MAX_TIMEOUT_S, help="Seconds to wait for the agent."),
    as_json: bool = typer.Option(False, "--json", help="Print the agent's full JSON reply."),
) -> None:
    """Show an agent's backends and device fingerprint."""
    from latnas.schema.errors import BackendUnavailable, LatnasError
    from profilers.remote import TOKEN_ENV, URL_ENV, AgentClient, read_token_file

    url = url or os.environ.get(URL_ENV)
    if not url:
        raise BackendUnavailable(f"no agent URL: pass --url or set {URL_ENV}")
    if token is not None and token_file is not None:
        raise LatnasError("give the agent token once: --token or --token-file, not both")
    if token_file is not None:
        token = read_token_file(token_file)
    elif token is not None:
        typer.echo(PS_WARNING, err=True)
    info = AgentClient(url, token or os.environ.get(TOKEN_ENV, ""), timeout_s).info()
    if as_json:
        typer.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    fp = info.get("fingerprint") or {}
    typer.echo(f"agent {url}: latnas {info.get('version', '?')}, default backend {info.get('default_backend', '?')}")
    typer.echo(f"device: {fp.get('cpu', '?')}{' + ' + fp['gpu'] if fp.get('gpu') else ''} (fingerprint {info.get('fingerprint_hash', '?')})")
    for name, status in sorted((info.get("backends") or {}).items()):
        mark = "yes" if status.get("available") else f"no ({status.get('reason', '')})"
        typer.echo(f"  {name:<14} {mark}")


def register(app: typer.Typer) -> None:
    """Add the ``agent`` sub-command group to ``app``."""
    app.add_typer(agent_app, name="agent")
