"""The hub's TLS: a server context whose certificate is read again once its files change, so that a renewed
certificate (a short-lived one from an ACME client, say) takes effect without a restart, which would cut every
ship's uploads in flight.

The check costs one ``stat`` of each file at most once a second, on a handshake (the context's SNI callback
runs for every handshake, with or without a server name), and a renewal takes effect on the first handshake
after it: that handshake is moved to a context holding the new pair. Connections already open keep the
certificate they were made with. A pair that does not load (a key and a certificate written one after the other,
caught in between) is logged once and the previous pair stays in use until a pair that loads appears.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("harbour.hub.tls")

RELOAD_CHECK_SECONDS = 1.0


class ReloadingCertificate:
    def __init__(self, cert: Path, key: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self._cert, self._key, self._clock = cert, key, clock
        self._guard = threading.Lock()
        self._stamp = self._files_stamp()
        self._current = self._load()  # a pair that does not load at start is the operator's error: raise it
        self._checked = clock()
        self.context = self._current  # what the server listens with; it moves handshakes to a renewed pair
        self.context.sni_callback = self._on_handshake

    def _load(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self._cert), str(self._key))
        return context

    def _files_stamp(self) -> tuple[int, ...]:
        stats = (self._cert.stat(), self._key.stat())
        return tuple(value for s in stats for value in (s.st_mtime_ns, s.st_size, s.st_ino))

    def _on_handshake(self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        self._reload_if_changed()
        if self._current is not context:
            connection.context = self._current

    def _reload_if_changed(self) -> None:
        with self._guard:
            now = self._clock()
            if now - self._checked < RELOAD_CHECK_SECONDS:
                return
            self._checked = now
            try:
                stamp = self._files_stamp()
            except OSError as error:
                log.warning("cannot read the TLS certificate files (%s); keeping the loaded certificate", error)
                return
            if stamp == self._stamp:
                return
            self._stamp = stamp  # tried once per change: a broken pair is not retried (and logged) every second
            try:
                self._current = self._load()
            except (ssl.SSLError, OSError, ValueError) as error:
                log.warning("the TLS certificate files changed but do not load (%s); keeping the previous "
                            "certificate until they do", error)
                return
            log.info("loaded the renewed TLS certificate from %s", self._cert)
