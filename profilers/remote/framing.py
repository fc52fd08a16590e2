"""How the agent reads one HTTP request: framing checks, a deadline on the whole read, strict JSON.

A request body is framed by exactly one ``Content-Length`` of plain ASCII
digits. ``Transfer-Encoding`` (chunked or otherwise) is refused: with a
``Content-Length`` beside it the two framings disagree about where the body
ends (request smuggling), and alone it is a body we do not read. HTTP/0.9
(no version, no headers) is refused. The request line, headers and body must
all arrive within ``AgentLimits.request_timeout_s`` in total, so a client
sending one byte a second cannot hold a connection for hours. JSON bodies
refuse duplicate keys, ``NaN``/``Infinity``, numbers that overflow a float
(``1e400``) and integers of more than :data:`MAX_INT_DIGITS` digits.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from http import HTTPStatus
from typing import Any, Callable

from latnas.schema.errors import DataError
from latnas.schema.safe_json import nesting_depth

MAX_INT_DIGITS = 18  # fits an int64; nothing in a request needs more


def framing_problem(headers, request_version: str) -> tuple[int, str] | None:
    """``(status, message)`` when the request's framing is unacceptable, else ``None``."""
    if request_version == "HTTP/0.9":
        return HTTPStatus.BAD_REQUEST, "HTTP/0.9 requests are not accepted; send HTTP/1.0 or HTTP/1.1"
    te = headers.get_all("Transfer-Encoding") or []
    lengths = headers.get_all("Content-Length") or []
    if te and lengths:
        return HTTPStatus.BAD_REQUEST, "both Content-Length and Transfer-Encoding given; send Content-Length only"
    if te:
        return HTTPStatus.LENGTH_REQUIRED, "Transfer-Encoding (chunked bodies) is not accepted; send Content-Length"
    if len(lengths) > 1:
        return HTTPStatus.BAD_REQUEST, "more than one Content-Length header"
    if lengths and not (lengths[0].isascii() and lengths[0].isdigit() and len(lengths[0]) <= 19):
        return HTTPStatus.LENGTH_REQUIRED, "Content-Length must be a plain decimal number of bytes"
    return None


class Deadline:
    """A total time limit on reading one request; past it the socket is shut, unblocking any read."""

    def __init__(self, seconds: float, connection: socket.socket):
        self.end = time.monotonic() + seconds
        self._connection = connection
        self._timer = threading.Timer(seconds, self._cut_off)
        self._timer.daemon = True
        self._timer.start()
        self.expired = False

    def left(self) -> float:
        return self.end - time.monotonic()

    def _cut_off(self) -> None:
        self.expired = True
        try:
            self._connection.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def cancel(self) -> None:
        self._timer.cancel()


def read_body(rfile, n: int, deadline: Deadline) -> bytes | None:
    """``n`` bytes of body, or ``None`` if the client stalls past the deadline or goes away."""
    chunks, got = [], 0
    try:
        while got < n and not deadline.expired:
            chunk = rfile.read1(min(65536, n - got))
            if not chunk:
                return None
            chunks.append(chunk)
            got += len(chunk)
    except OSError:  # the per-read timeout, a reset, or the deadline's shutdown
        return None
    return b"".join(chunks) if got == n else None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DataError(f"request body: key {key[:60]!r} appears twice in one object")
        out[key] = value
    return out


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise DataError(f"request body: number {text[:40]!r} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise DataError(f"request body is not valid JSON for the agent: an integer of {len(text)} digits "
                        f"(at most {MAX_INT_DIGITS})")
    return int(text)


def _no_constant(name: str) -> Any:
    raise DataError(f"request body: {name} is not a finite JSON number")


def decode_json(body: bytes, max_depth: int, max_bytes: int, what: str = "request body") -> Any:
    """Strictly parse a JSON body; one-line :class:`DataError` on anything odd."""
    if len(body) > max_bytes:
        raise DataError(f"{what} is larger than {max_bytes} bytes; refused")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{what} is not UTF-8 text") from None
    if nesting_depth(text) > max_depth:
        raise DataError(f"{what} nests deeper than {max_depth} levels; refused")
    hooks: dict[str, Callable] = {"object_pairs_hook": _no_duplicates, "parse_float": _finite_float,
                                  "parse_int": _bounded_int, "parse_constant": _no_constant}
    try:
        return json.loads(text, **hooks)
    except (ValueError, RecursionError) as exc:
        raise DataError(f"{what} is not valid JSON: {str(exc)[:200]}") from None
