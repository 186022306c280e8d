"""External programs (simulators, synthesis and proof tools) that never outlive wrapkit.

Every program wrapkit starts goes through :func:`popen` or :func:`run`, which

* start it in a process group of its own, so that it and anything it starts can be ended
  together (:func:`stop`), and a Ctrl-C typed at the terminal reaches only wrapkit, which
  then ends the group itself instead of leaving half of it running;
* ask the kernel to kill it when wrapkit dies (Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``),
  which covers the cases no handler can: ``kill -9`` of wrapkit, or a crash;
* end it when the Python side of the call fails for any reason (an exception, Ctrl-C,
  SIGTERM turned into :class:`Terminated` by :func:`install_signal_handlers`).

The parent-death signal belongs to the *thread* that started the program: start long-lived
programs from the main thread (or from a thread that outlives them).
"""

import atexit
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading

__all__ = ["Terminated", "install_signal_handlers", "live_processes", "popen",
           "restore_signal_handlers", "run", "stop"]

_PR_SET_PDEATHSIG = 1
# Seconds a stopped program gets to exit after SIGTERM before SIGKILL.
_GRACE_S = 2.0

_live = set()
_live_lock = threading.Lock()


def _load_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


# Resolved once in the parent, so that the child does as little as possible between fork
# and exec (no library loading there).
_PRCTL = _load_prctl()


class Terminated(KeyboardInterrupt):
    """wrapkit received SIGTERM (or SIGHUP): unwinds like Ctrl-C, so that every ``finally``
    ends the programs it started and records the interruption; the CLI exits with 143."""


def _die_with_parent(parent_pid):
    def setup():
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork and prctl: then nothing would kill us.
        if os.getppid() != parent_pid:
            os._exit(1)
    return setup


def popen(cmd, **kwargs):
    """:class:`subprocess.Popen` in its own process group that dies with wrapkit.

    Accepts :class:`subprocess.Popen`'s keyword arguments (``start_new_session`` and
    ``preexec_fn`` are set here). Pair it with :func:`stop` in a ``finally`` (or use
    :func:`run`).
    """
    kwargs["start_new_session"] = True
    kwargs["preexec_fn"] = _die_with_parent(os.getpid())
    proc = subprocess.Popen(cmd, **kwargs)
    with _live_lock:
        _live.add(proc)
    return proc


def stop(proc, grace=_GRACE_S):
    """End ``proc`` and its process group: SIGTERM, then SIGKILL after ``grace`` seconds.

    Safe to call on a program that already ended; reaps it.
    """
    try:
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # Whatever the leader started may still run even when the leader is gone.
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
    finally:
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        with _live_lock:
            _live.discard(proc)


def _signal_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)  # the group id is the leader's pid (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


def run(cmd, *, input=None, timeout=None, check=False, capture_output=False, **kwargs):
    """:func:`subprocess.run` through :func:`popen`: the program is ended (with its group)
    when the call is left by an exception, Ctrl-C, SIGTERM or its ``timeout``.

    Returns a :class:`subprocess.CompletedProcess`; raises :class:`subprocess.TimeoutExpired`
    and (with ``check``) :class:`subprocess.CalledProcessError` as :func:`subprocess.run`
    does.
    """
    if capture_output:
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    proc = popen(cmd, **kwargs)
    try:
        stdout, stderr = proc.communicate(input, timeout=timeout)
    except BaseException:
        stop(proc)
        raise
    with _live_lock:
        _live.discard(proc)
    if check and proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, proc.args, stdout, stderr)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def live_processes():
    """The programs started by :func:`popen` that have not been stopped or waited for."""
    with _live_lock:
        return [p for p in _live if p.poll() is None]


def _stop_all():
    for proc in live_processes():
        stop(proc, grace=0.5)


atexit.register(_stop_all)


def _raise_terminated(signum, frame):
    raise Terminated(f"signal {signal.Signals(signum).name}")


def install_signal_handlers():
    """Turn SIGTERM and SIGHUP into :class:`Terminated` (in the main thread), so that a
    ``kill`` of wrapkit unwinds through the ``finally`` blocks that end its programs and
    record the interruption. Called by the ``wrapkit`` command line; returns the handlers it
    replaced, for :func:`restore_signal_handlers`."""
    previous = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            previous[sig] = signal.signal(sig, _raise_terminated)
    return previous


def restore_signal_handlers(previous):
    """Put back the handlers :func:`install_signal_handlers` replaced (a caller that runs
    the CLI in-process, such as a test, keeps its own)."""
    for sig, handler in previous.items():
        signal.signal(sig, handler)
