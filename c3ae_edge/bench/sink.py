"""A bench run's JSON document, written as it is measured: after every row (a GPU row) or every model (the CPU rows
of one model are timed interleaved), the whole document is rewritten by temp file + rename, marked ``partial``. A run
that is interrupted, killed or cut by its time limit leaves valid JSON with the rows so far and says why it stopped;
a run that ends normally rewrites it without the mark."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, a CI job cancelled): handled like Ctrl-C, so the rows so far are kept."""


class RowSink:
    def __init__(self, path: str | Path | None, head: dict):
        self.path = Path(path) if path else None
        self.head = head  # schema, config, environment, paper: everything but the rows
        self.rows: list[dict] = []
        self._old_term = None

    def document(self, stopped: str | None = None, partial: bool = True) -> dict:
        doc = {**self.head, "results": list(self.rows)}
        if partial:
            doc["partial"] = True
            doc["stopped"] = stopped or "running (the run has not finished)"
        return doc

    def add(self, rows: list[dict]) -> None:
        self.rows += rows
        self._write(self.document())

    def stop(self, reason: str) -> dict:
        """The document of a run cut short: written (when there are rows) and returned."""
        doc = self.document(reason)
        self._write(doc)
        return doc

    def _write(self, doc: dict) -> None:
        if self.path is None or not doc["results"]:  # nothing measured yet: leave any earlier file alone
            return
        from c3ae_edge.atomic import write_atomic

        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(doc, indent=1) + "\n")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old_term = signal.signal(signal.SIGTERM, _terminate)
        return self

    def __exit__(self, kind, exc, tb):
        if self._old_term is not None:
            signal.signal(signal.SIGTERM, self._old_term)
        if kind is not None and issubclass(kind, KeyboardInterrupt):
            self.stop("terminated (SIGTERM)" if issubclass(kind, Terminated) else "interrupted (Ctrl-C)")
        return False


def _terminate(signum, frame):
    raise Terminated()
