"""The worker's event stream: one JSON object per line on the process's ORIGINAL stdout.

Each line is one of the kinds ``services.trainer.protocol`` defines (``encode_line`` checks the kind and its
fields); the service reads the lines with the same module and numbers them. Libraries print to stdout at
will, so the real stdout is moved aside first and fd 1 is pointed at stderr (``worker.log``).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, TextIO

from services.trainer.protocol import encode_line


class EventSink:
    """Writes events as JSON lines, flushed one by one; safe to use from several threads."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    @classmethod
    def from_stdout(cls) -> EventSink:
        """Takes the process's stdout for events and sends everything else written to fd 1 to stderr."""
        sys.stdout.flush()
        stream = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
        os.dup2(2, 1)
        return cls(stream)

    def emit(self, type: str, message: str = "", **fields: Any) -> None:
        """Sends a line of kind ``type`` (a ``protocol.LINE_TYPES`` key) with its ``fields``."""
        line = encode_line(type, message, **fields)
        with self._lock:
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                pass  # the service has gone; the log in worker.log still tells the story
        try:
            print(f"event: {line}", file=sys.stderr, flush=True)
        except OSError:
            pass  # worker.log unwritable (disk full, file size limit): the event itself went out above

    def status(self, status: str, message: str) -> None:
        self.emit("status", message, status=status)

    def log(self, message: str) -> None:
        self.emit("log", message)

    def warning(self, message: str) -> None:
        self.emit("warning", message)

    def error(self, message: str) -> None:
        self.emit("error", message)
