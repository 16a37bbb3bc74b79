"""Ctrl+C (SIGINT) at any moment of a command ends it with one line and exit code 130.

The example scripts call :func:`install` first, before importing torch or JAX. From then on,
until :func:`hand_over`, a Ctrl+C prints the script's current message (:func:`set_message`) and
leaves with ``os._exit(130)``:

* SIGINT is blocked in the main thread and taken by a watcher thread (``signal.sigwait``), so it
  is answered at once even while the main thread is inside a C extension, and every thread and
  process started meanwhile inherits the blocked signal: the environment workers, the
  multiprocessing helpers (forkserver, resource tracker) and a spawned checking process never
  see the terminal's Ctrl+C, so none of them prints its own KeyboardInterrupt traceback while
  its interpreter starts.
  (multiprocessing's resource tracker would unblock it after starting its process: see
  :func:`_tracker_leaves_sigint_blocked`.)
* Raising KeyboardInterrupt instead would print a traceback from whichever import it lands in,
  and a half-imported torch prints its "FakeTensor cache stats" at exit; ``os._exit`` runs no exit
  hook. The multiprocessing children this process started are killed first, so that none
  reports the broken pipe of its vanished parent.

:func:`hand_over` gives SIGINT back to the main thread when a runner (``BaseRunner._stop_signals``:
a final checkpoint, then the resume command) or a sweep is about to install its own handler;
until it does, the same line and exit code come from a plain handler. Only the standard library
is imported here.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

EXIT_CODE = 128 + signal.SIGINT  # 130, the shell's code for a process ended by Ctrl+C
BEFORE_THE_RUN = "interrupted (Ctrl+C) before the run started; nothing was written"

_message: str | Callable[[], str] = BEFORE_THE_RUN
_watcher: threading.Thread | None = None
_watching = False
_CAN_WATCH = hasattr(signal, "pthread_sigmask") and hasattr(signal, "sigwait")  # not on Windows


def set_message(message: str | Callable[[], str]) -> None:
    """What a Ctrl+C prints from now on: a line, or a function returning it (called at the
    Ctrl+C, so it can say what exists by then, e.g. a run directory and how to resume it)."""
    global _message
    _message = message


def current_message() -> str:
    """The line a Ctrl+C prints now."""
    try:
        text = _message() if callable(_message) else _message
    except Exception:  # noqa: BLE001 - the exit must not fail because its message did
        text = ""
    return text or "interrupted (Ctrl+C)"


def _flush(stream) -> None:
    try:
        stream.flush()
    except Exception:  # noqa: BLE001 - e.g. a Ctrl+C in the middle of a print to this stream
        pass


def exit_interrupted(message: str | None = None) -> NoReturn:
    """Print ``message`` (default: :func:`current_message`) as one line on stderr and exit 130 at
    once, after flushing what the command already printed and killing its multiprocessing
    children."""
    text = message or current_message()
    for stream in (sys.stdout, sys.stderr):
        # from the watcher thread the main thread may hold the stream's lock: wait a moment only
        flusher = threading.Thread(target=_flush, args=(stream,), daemon=True)
        flusher.start()
        flusher.join(1.0)
    try:
        os.write(2, f"{text}\n".encode("utf-8", "replace"))
        # the line above is the last: the main thread, still running, would otherwise report the
        # children killed below (e.g. as an environment worker that died)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
    except OSError:
        pass
    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is not None:
        try:
            for child in multiprocessing.active_children():
                child.kill()
        except Exception:  # noqa: BLE001 - leaving at once matters more
            pass
    os._exit(EXIT_CODE)


def _on_sigint(signum: int, frame: object) -> None:
    exit_interrupted()


def _watch() -> None:
    while True:
        signal.sigwait({signal.SIGINT})
        if not _watching:  # hand_over() woke us up: SIGINT is the main thread's again
            return
        exit_interrupted()


def _tracker_leaves_sigint_blocked(watching: bool) -> None:
    """multiprocessing's resource tracker blocks SIGINT and SIGTERM while it starts its process
    and then *unblocks* them, which would undo :func:`install` in the main thread for every
    process started after it (the forkserver, the workers): while SIGINT is watched, let it
    block and unblock SIGTERM only (its process inherits the blocked SIGINT all the same)."""
    try:
        from multiprocessing import resource_tracker
    except ImportError:
        return
    both = (signal.SIGINT, signal.SIGTERM)
    if isinstance(getattr(resource_tracker, "_IGNORED_SIGNALS", None), tuple):
        resource_tracker._IGNORED_SIGNALS = (signal.SIGTERM,) if watching else both


def install(message: str | Callable[[], str] = BEFORE_THE_RUN) -> None:
    """Make Ctrl+C end this process with ``message`` (see :func:`set_message`) and exit 130,
    whatever the process is doing, until :func:`hand_over`. Call it again to take SIGINT back
    after a phase that handled it itself."""
    global _watcher, _watching
    set_message(message)
    # for a SIGINT that reaches a thread not blocking it (or where SIGINT cannot be watched)
    signal.signal(signal.SIGINT, _on_sigint)
    if not _CAN_WATCH:
        return
    _watching = True
    _tracker_leaves_sigint_blocked(True)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    if _watcher is None or not _watcher.is_alive():
        _watcher = threading.Thread(target=_watch, name="ctrl-c-watcher", daemon=True)
        _watcher.start()


def hand_over() -> None:
    """Let SIGINT reach the main thread again (its handler stays :func:`install`'s until a runner
    or a sweep installs its own), for a phase that handles Ctrl+C itself; threads and processes
    started from now on receive SIGINT too."""
    global _watching
    if not _CAN_WATCH or _watcher is None:
        return
    _watching = False
    _tracker_leaves_sigint_blocked(False)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if _watcher.is_alive():
        signal.pthread_kill(_watcher.ident, signal.SIGINT)  # ends its sigwait
        _watcher.join(1.0)


def take_back(message: str | Callable[[], str]) -> None:
    """After :func:`hand_over`'s phase: Ctrl+C ends the process with ``message`` again (only
    the message changes in a process that never called :func:`install`, e.g. a test)."""
    if _watcher is None:
        set_message(message)
    else:
        install(message)
