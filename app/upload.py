"""What a session accepts from its browser (the lab's Load) and where it may write.

* **Size**: an upload larger than :func:`max_upload_bytes` (``NQS_MAX_UPLOAD_MB``, default 32 MB;
  ``make class MAX_UPLOAD_MB=…``) is refused with a message naming the limit: in the browser before
  it is sent (the widget's ``max_file_size``), and on the server while its chunks arrive
  (:func:`limit_upload`), so a client that ignores the page's check cannot fill the server's memory.
  Chunks are :data:`CHUNK_BYTES`, so one websocket message never needs more than twice that
  (``scripts/serve_class.sh`` sets Bokeh's ``--websocket-max-message-size`` from it).
* **Parsing**: JSON and NumPy's ``.npz`` read with ``allow_pickle=False`` (``app.export``); nothing
  is unpickled.
* **Paths**: the uploaded file's name is only ever shown (:func:`display_name`), never used as a
  path; a session writes only inside its own :class:`SessionFolder`, removed when the session ends.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import threading
import unicodedata
from pathlib import Path
from typing import Any, Callable, Iterable

log = logging.getLogger("nqs_lab.upload")

DEFAULT_MAX_UPLOAD_MB = 32
CHUNK_BYTES = 4 * 1024 * 1024  # the browser sends an upload in pieces of this size
MB = 1024 * 1024


def max_upload_bytes() -> int:
    """The largest upload this server accepts: ``NQS_MAX_UPLOAD_MB`` megabytes (default 32)."""
    raw = os.environ.get("NQS_MAX_UPLOAD_MB", "").strip()
    try:
        mb = float(raw) if raw else DEFAULT_MAX_UPLOAD_MB
    except ValueError:
        log.warning("NQS_MAX_UPLOAD_MB=%r is not a number: using %d MB", raw, DEFAULT_MAX_UPLOAD_MB)
        mb = DEFAULT_MAX_UPLOAD_MB
    return max(1, int(mb * MB))


def megabytes(n_bytes: int) -> str:
    """``12.5 MB`` (one decimal below 10 MB, none above)."""
    mb = n_bytes / MB
    return f"{mb:.1f} MB" if mb < 10 else f"{mb:.0f} MB"


def too_large_text(filename: str, n_bytes: int | None, limit: int) -> str:
    """The refusal of an oversize upload, naming the limit."""
    size = f" ({megabytes(n_bytes)})" if n_bytes is not None else ""
    return (f"{display_name(filename)}{size} is larger than the {megabytes(limit)} this server accepts "
            f"for a loaded run (the limit is set with NQS_MAX_UPLOAD_MB)")


def check_size(filename: str, n_bytes: int, limit: int | None = None) -> None:
    """Raise ValueError naming the limit when ``n_bytes`` exceed it."""
    limit = max_upload_bytes() if limit is None else limit
    if n_bytes > limit:
        raise ValueError(too_large_text(filename, n_bytes, limit))


def display_name(filename: str | None, max_chars: int = 80) -> str:
    """The uploaded file's name as shown to the user: its last path component, printable, shortened.

    Browsers send a bare name, but a client can send anything (``../../etc/passwd``, control
    characters): this is for messages only; no path is ever built from it.
    """
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    if len(name) > max_chars:
        name = name[: max_chars - 1] + "…"
    return name or "the file"


# ----- the session's folder ---------------------------------------------------------------------
_FOLDERS: set["SessionFolder"] = set()
_FOLDERS_LOCK = threading.Lock()


class SessionFolder:
    """A session's own temporary folder (its runs' checkpoints, uploaded checkpoints being read).

    :meth:`remove` deletes it once the given threads (the session's workers, which may still
    write a checkpoint) have ended; whatever is left when the server process exits goes too.
    """

    def __init__(self, prefix: str = "nqs-lab-") -> None:
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        self._lock = threading.Lock()
        self._removing = False
        self.removed = threading.Event()
        with _FOLDERS_LOCK:
            _FOLDERS.add(self)

    def write(self, data: bytes, suffix: str = "") -> Path:
        """A new file inside the folder holding ``data``, named here (never after anything a client
        sent); once :meth:`remove` has begun, no file is created any more (ValueError)."""
        with self._lock:
            if self._removing:
                raise ValueError("the session has ended")
            fd, name = tempfile.mkstemp(suffix=suffix, prefix="upload-", dir=self.path)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        return Path(name)

    def remove(self, after: Iterable[threading.Thread] = ()) -> None:
        """Delete the folder now, or, when some of ``after`` still run, from a thread once they end."""
        with self._lock:
            if self._removing:
                return
            self._removing = True
        pending = [t for t in after if t.is_alive() and t is not threading.current_thread()]
        if not pending:
            self._delete()
            return

        def wait_then_delete() -> None:
            for t in pending:
                t.join()
            self._delete()

        threading.Thread(target=wait_then_delete, daemon=True, name="nqs-folder-cleanup").start()

    def _delete(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        with _FOLDERS_LOCK:
            _FOLDERS.discard(self)
        self.removed.set()
        log.info("session folder %s removed", self.path)


@atexit.register
def _remove_all_folders() -> None:
    """At the server's exit, the folders of sessions that never ended."""
    with _FOLDERS_LOCK:
        left = list(_FOLDERS)
    for folder in left:
        shutil.rmtree(folder.path, ignore_errors=True)


# ----- the upload widget ------------------------------------------------------------------------
def limit_upload(widget: Any, on_refused: Callable[[str], None], limit: int | None = None) -> Any:
    """Refuse, on the server, an upload whose chunks add up to more than ``limit`` bytes.

    Wraps the widget's handler of the browser's upload messages (panel-material-ui's chunked
    protocol: ``upload_event`` per chunk, then ``finished``; ``error`` when the page refused a
    file itself, e.g. over ``max_file_size``).  A refused upload's chunks are dropped at once,
    its value is never set, the browser shows the error and ``on_refused(message)`` is called.
    """
    limit = max_upload_bytes() if limit is None else limit
    handle = widget._handle_msg  # the bound method Panel calls for every message of this widget
    received = [0]  # bytes of the current upload, all files together (a client may send any names)
    refused: list[str] = []

    def guarded(msg: Any) -> None:
        status = msg.get("status") if isinstance(msg, dict) else None
        if status == "initializing":
            received[0] = 0
            refused.clear()
        elif status == "upload_event":
            if refused:
                return
            received[0] += len(msg.get("data") or b"")
            if received[0] > limit:
                refused.append(too_large_text(str(msg.get("name", "")), None, limit))
                widget._file_buffer.clear()
                return
        elif status == "finished":
            received[0] = 0
            if refused:
                widget._file_buffer.clear()
                widget._send_msg({"status": "error", "error": refused[0]})
                on_refused(f"Not loaded: {refused.pop()}.")
                return
        elif status == "error":  # the page refused the file (too large, wrong type): say it here too
            on_refused(f"Not loaded: {msg.get('error') or 'the browser refused the file'}.")
            return
        handle(msg)

    widget._handle_msg = guarded
    return widget


def upload_input(on_refused: Callable[[str], None], **kwargs: Any) -> Any:
    """The Load widget: .json / .npz, size-limited in the browser and on the server."""
    import panel as pn

    limit = max_upload_bytes()
    widget = pn.ui.FileInput(accept=".json,.npz", multiple=False, max_file_size=limit, chunk_size=CHUNK_BYTES,
                             **kwargs)
    return limit_upload(widget, on_refused, limit)


__all__ = ["CHUNK_BYTES", "SessionFolder", "check_size", "display_name", "limit_upload", "max_upload_bytes",
           "too_large_text", "upload_input"]
