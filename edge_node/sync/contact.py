"""Whether the hub can be reached and takes this site's token, said in words, once per change.

A wrong token or a mistyped ``--hub`` used to be silent on the ship: each failed request was a debug or
INFO line with an aiohttp class name, status said ``link unknown``. ``HubContact`` keeps the *kind* of the
current problem (unreachable, refused token, certificate, ...) and logs a WARNING when the kind changes and
again when contact is back, so a log of a ship that sat for weeks behind a wrong token has one line, not
one per retry. Its words go into ``/v1/status``, ``harbour edge status`` and the backlog report.

``TokenSource`` reads ``--token-file`` again whenever the file changes, so a rotated token is used by the
next request without a restart.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

log = logging.getLogger("edge_node.sync.contact")


@dataclass(frozen=True)
class Problem:
    kind: str  # stable across retries: a change of kind is what gets logged
    words: str  # for the crew: what is wrong and what to check


def problem_of_answer(status: int, hub: str) -> Problem | None:
    """The problem an HTTP answer shows about the contact itself (not about one segment), or None."""
    if status == 401:
        return Problem("token-refused", f"the hub at {hub} refused this site's token (401): check --token-file "
                                        "against `harbour hub add-site SITE --rotate` at the hub; a changed token "
                                        "file is read again without a restart")
    if status == 403:
        return Problem("token-foreign", f"the hub at {hub} says this token belongs to another site (403): check "
                                        "--site and --token-file")
    if status >= 500:
        return Problem(f"hub-{status}", f"the hub at {hub} answers {status}: it is up but failing; see its log")
    return None


def problem_of_error(error: BaseException, hub: str) -> Problem:
    """The problem a failed request shows: DNS, refused, certificate, stalled, reset."""
    if isinstance(error, TimeoutError):
        return Problem("stalled", f"the link to {hub} stalled: nothing moved for a while (a silent satellite link, "
                                  "or a firewall dropping packets)")
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return Problem("certificate", f"the hub's TLS certificate at {hub} was not accepted "
                                      f"({error.certificate_error}); give the fleet's CA with --hub-ca")
    if isinstance(error, aiohttp.ClientSSLError):
        return Problem("tls", f"TLS with {hub} failed ({error}); check that --hub says https:// only for a TLS hub")
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return Problem("dns", f"cannot resolve the host name of {hub}: check --hub, or the ship's DNS")
    if isinstance(error, aiohttp.ClientConnectorError):
        if error.os_error.errno == errno.ECONNREFUSED:
            return Problem("refused", f"nothing answers at {hub} (connection refused): is the hub running, and is "
                                      "--hub's port right?")
        return Problem("unreachable", f"cannot connect to {hub}: {error.os_error.strerror or error}")
    return Problem("cut", f"the connection to {hub} broke ({type(error).__name__}); the link is unreliable")


class HubContact:
    """The current problem reaching the hub, if any; logs each change of kind once."""

    def __init__(self, hub: str) -> None:
        self.hub = hub
        self.problem: Problem | None = None

    def failed(self, problem: Problem) -> None:
        if self.problem is None or problem.kind != self.problem.kind:
            log.warning("sync: %s", problem.words)
        self.problem = problem

    def answered(self, status: int) -> None:
        problem = problem_of_answer(status, self.hub)
        if problem is not None:
            self.failed(problem)
        elif self.problem is not None:
            log.warning("sync: the hub at %s answers again (was: %s)", self.hub, self.problem.kind)
            self.problem = None

    def describe(self) -> str | None:
        return self.problem.words if self.problem else None


class TokenSource:
    """The site's token: given once (``--token``), or read from ``--token-file`` again whenever the file's
    modification time or size changes (one ``stat`` per request)."""

    def __init__(self, token: str, path: Path | None = None, stat: Callable[[Path], os.stat_result] = os.stat) -> None:
        self._token = token
        self._path = path
        self._stat = stat
        self._seen = self._signature()

    def _signature(self) -> tuple[float, int] | None:
        if self._path is None:
            return None
        try:
            info = self._stat(self._path)
        except OSError:
            return None
        return info.st_mtime, info.st_size

    def __call__(self) -> str:
        signature = self._signature()
        if signature is not None and signature != self._seen:
            self._seen = signature
            token = read_token_file(self._path)  # type: ignore[arg-type]
            if token and token != self._token:
                log.warning("sync: read a new token from %s; using it from now on", self._path)
                self._token = token
        return self._token


def read_token_file(path: Path) -> str | None:
    """The first line of ``path``, or None if it is empty or unreadable."""
    try:
        lines = path.read_text().strip().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    return lines[0].strip() if lines and lines[0].strip() else None
