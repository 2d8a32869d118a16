"""SIGTERM and SIGINT that stop a worker even while its main thread waits in a system call.

Python runs a signal handler in the main thread, between two bytecodes. A signal that arrives
after the main thread's last check and before it blocks (in ``accept``, in ``recv``, reading its
standard input), or that the kernel hands to another thread (one the user's ``init()`` started,
say), does not interrupt that call: the handler would wait for the next request, or for ever, and
the supervisor would have to kill the worker. Both happened: about one stop in ten of an idle
worker hung in ``accept``.

The C-level handler still runs at once, in whichever thread, and writes the signal's number to
the wake-up descriptor (``signal.set_wakeup_fd``). A helper thread reads it and, until the Python
handler has run, sends the signal again to the main thread itself, where it now interrupts the
blocked call (EINTR) and the handler runs. Standard library only, Python 3.8 and later.
"""

import os
import signal
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

# How long the helper waits for the handler before sending the signal to the main thread again;
# doubled after each try, up to the second (the main thread may be in a long call of the user's
# that retries on EINTR without returning to Python).
_RESEND_FIRST_S = 0.05
_RESEND_MAX_S = 1.0


def install(on_signal):
    """Make ``on_signal(signum, frame)`` the handler of SIGTERM and SIGINT, run in the main thread
    whatever the main thread is doing. Call from the main thread. ``on_signal`` may run more than
    once for one signal (the original and a resent copy), so it must tolerate a repeat."""
    handled = threading.Event()

    def handler(signum, frame):
        handled.set()
        on_signal(signum, frame)

    for signum in STOP_SIGNALS:
        signal.signal(signum, handler)
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)  # the C handler must never block on it
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    main = threading.main_thread().ident
    threading.Thread(target=_resend, args=(read_fd, main, handled), name="sluice-signals",
                     daemon=True).start()


def _resend(read_fd, main, handled):
    while True:
        try:
            data = os.read(read_fd, 64)
        except OSError:
            return
        if not data:
            return
        signum = next((s for s in data if s in STOP_SIGNALS), None)
        if signum is None:
            continue  # a signal the user's code handles: not ours
        delay = _RESEND_FIRST_S
        while not handled.wait(delay):
            try:
                signal.pthread_kill(main, signum)
            except (OSError, ValueError):
                return  # the main thread is gone: the process is ending
            delay = min(2 * delay, _RESEND_MAX_S)
