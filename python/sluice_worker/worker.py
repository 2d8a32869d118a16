"""Process entry: boot the scoring script, then serve the replica on one Unix socket.

Exit codes: 0 after SIGTERM/SIGINT; 1 on an internal failure (for example the socket cannot be
bound); 2 on bad command-line arguments; 3 when the scoring script cannot be served (import error,
missing ``init``/``run``, unsupported ``run`` signature, ``init()`` raising, unreadable user swagger
file), as azmlinfsrv's gunicorn workers do.
"""

import argparse
import faulthandler
import importlib.util
import os
import signal
import socket
import sys
import threading
import time
import traceback

from sluice_worker import protocol, stopping
from sluice_worker.app import App, BootError, error_response, load_module, log_model_dir, MSG_INTERNAL

READY_LINE = "SLUICE_WORKER_READY"
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BOOT = 3

_SHIM_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shims")
_SHIMMED = {
    "azureml.contrib.services.aml_request": "azureml/contrib/services/aml_request.py",
    "azureml.contrib.services.aml_response": "azureml/contrib/services/aml_response.py",
}


def _eprint(*args):
    print(*args, file=sys.stderr, flush=True)


def install_shims():
    """Make ``azureml.contrib.services.aml_{request,response}`` and
    ``azureml_inference_server_http.api.aml_{request,response}`` importable without Flask, unless
    the real packages are installed (which then win: the shim folder goes to the end of sys.path).
    """
    if _SHIM_ROOT not in sys.path:
        sys.path.append(_SHIM_ROOT)
    for name, rel in _SHIMMED.items():
        try:
            found = importlib.util.find_spec(name) is not None
        except Exception:  # e.g. a regular ``azureml`` package that has no ``contrib``
            found = False
        if not found:
            # A real ``azureml`` package hides our namespace portion: register the shim directly
            # under its dotted name, as azmlinfsrv itself does for these two modules.
            spec = importlib.util.spec_from_file_location(name, os.path.join(_SHIM_ROOT, rel))
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[name] = module


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m sluice_worker", description=__doc__.splitlines()[0])
    p.add_argument("--socket", required=True, help="Unix socket path to listen on")
    p.add_argument("--entry-script", default=os.environ.get("AZUREML_ENTRY_SCRIPT"),
                   help="the scoring script (default: $AZUREML_ENTRY_SCRIPT); relative to the app root "
                        "when one is given, else to the current directory")
    p.add_argument("--app-root", default=os.environ.get("AML_APP_ROOT"),
                   help="code root added to sys.path (default: $AML_APP_ROOT, else the script's folder)")
    args = p.parse_args(argv)
    if not args.entry_script:
        p.error("--entry-script (or AZUREML_ENTRY_SCRIPT) is required")
    return args


def resolve_paths(entry_script, app_root):
    """-> (absolute script path, absolute app root)."""
    if app_root:
        app_root = os.path.abspath(app_root)
        script = os.path.join(app_root, entry_script)  # an absolute entry_script stays as it is
        if not os.path.isabs(entry_script) and not os.path.exists(script) and os.path.exists(entry_script):
            script = os.path.abspath(entry_script)
    else:
        script = os.path.abspath(entry_script)
        app_root = os.path.dirname(script)
    return script, app_root


def boot(args):
    """Load the script and call init(); on failure print why and exit 3."""
    script, app_root = resolve_paths(args.entry_script, args.app_root)
    os.environ["AML_APP_ROOT"] = app_root
    os.environ.setdefault("AZUREML_ENTRY_SCRIPT", args.entry_script)

    if app_root not in sys.path:
        sys.path.append(app_root)
    source_dir = os.environ.get("AZUREML_SOURCE_DIRECTORY")
    if source_dir:
        sys.path.append(os.path.join(app_root, source_dir))
    install_shims()

    try:
        module = load_module(script)
    except BaseException:
        _eprint(f"Failed to import user script {script} because it raised an unhandled exception")
        _eprint(traceback.format_exc())
        log_model_dir()
        sys.exit(EXIT_BOOT)
    try:
        app = App(module, app_root)
    except BootError as ex:
        _eprint(f"Failed to load user script {script}: {ex}")
        sys.exit(EXIT_BOOT)
    except BaseException:
        _eprint(f"Failed to analyze run() of user script {script}")
        _eprint(traceback.format_exc())
        sys.exit(EXIT_BOOT)
    _eprint(f"sluice_worker: {script}: run() mode is {app.mode}")

    try:
        app.call_init()
    except BaseException:
        _eprint("User's init function failed")
        _eprint("Encountered Exception " + traceback.format_exc())
        log_model_dir()
        sys.exit(EXIT_BOOT)

    try:
        app.build_swagger()
    except BaseException:
        _eprint("Failed to prepare the swagger documents")
        _eprint(traceback.format_exc())
        sys.exit(EXIT_BOOT)
    return app


class _Shutdown(Exception):
    pass


class Server:
    def __init__(self, app, path):
        self.app = app
        self.path = path
        self.busy = False
        self.stopping = False
        self.listener = None

    def _on_signal(self, signum, frame):
        if self.stopping:
            return  # a repeat: the first is being acted on
        self.stopping = True
        if not self.busy:
            raise _Shutdown()
        # Busy: finish and answer the current request first; the loop checks ``stopping``.

    def bind(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(1)
        self.listener = listener

    def serve_forever(self):
        stopping.install(self._on_signal)
        try:
            # Ready only once a SIGTERM would be handled: the supervisor may stop us at once.
            sys.__stdout__.write(READY_LINE + "\n")
            sys.__stdout__.flush()
            while True:
                conn, _ = self.listener.accept()
                try:
                    self.serve_connection(conn)
                finally:
                    conn.close()
                # A stop that came while busy, when the replica went away before the answer.
                if self.stopping:
                    raise _Shutdown()
        except _Shutdown:
            pass
        finally:
            self.close()

    def close(self):
        if self.listener is not None:
            self.listener.close()
            self.listener = None
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def serve_connection(self, conn):
        reader = protocol.FrameReader(conn)
        app = self.app
        outbox = _Outbox(conn)
        try:
            while True:
                # Answers are held only while the next request is already here; never while waiting.
                if outbox.held and not reader.has_frame() and not outbox.flush():
                    return
                if self.stopping:
                    raise _Shutdown()
                try:
                    frame = reader.read_frame()
                except protocol.ProtocolError as ex:
                    _eprint(f"sluice_worker: dropping connection: {ex}")
                    return
                except OSError:
                    return
                if frame is None:
                    return
                header, body = frame
                self.busy = True
                try:
                    rid = header.get("id")
                    try:
                        status, headers, out = app.handle(
                            header.get("method") or "GET",
                            header.get("path") or "/",
                            header.get("query") or "",
                            [(str(k).lower(), str(v)) for k, v in (header.get("headers") or ())],
                            body,
                        )
                    except Exception:
                        _eprint("Encountered Exception: " + traceback.format_exc())
                        status, headers, out = error_response(500, MSG_INTERNAL)
                    answer = {"id": rid, "status": status, "headers": [list(h) for h in headers]}
                    # The next request is already here: hold this answer to send it with the next ones.
                    if reader.has_frame() and not outbox.full() and len(out) <= _HOLD_BYTES:
                        ok = outbox.hold(answer, out)
                    else:
                        ok = outbox.send(answer, out)
                    if not ok:
                        return
                finally:
                    self.busy = False
        finally:
            outbox.close()


# At most this many answers, or bytes of answers, are held back while more requests are buffered, and
# for at most this long: a request that runs long (or hangs) must not keep the answers before it.
_HOLD_MAX = 8
_HOLD_BYTES = 64 * 1024
_HOLD_SECONDS = 0.002


class _Outbox:
    """Answers on their way to the replica. An answer is held while the next request is already
    buffered, so that several go in one write (one wake-up of the replica); a helper thread, started
    the first time something is held, sends what has been held for ``_HOLD_SECONDS`` while the main
    thread is busy in run(). Writes happen under one lock, so frames never interleave. A worker
    that serves one request at a time never holds anything, and never wakes the helper."""

    def __init__(self, conn):
        self.conn = conn
        self.lock = threading.Lock()
        self.held = []
        self.held_bytes = 0
        self.since = 0.0
        self.broken = False
        self.closed = False
        self.wake = threading.Event()
        self.thread = None

    def full(self):
        return len(self.held) + 1 >= _HOLD_MAX or self.held_bytes >= _HOLD_BYTES

    def hold(self, answer, body):
        """Hold one answer; the helper thread sends it if the main thread has not within
        ``_HOLD_SECONDS``. False once the connection is broken."""
        frame = protocol.encode_frame(answer, body)
        with self.lock:
            if not self.held:
                self.since = time.monotonic()
            self.held.append(frame)
            self.held_bytes += len(frame)
        if self.thread is None:
            self.thread = threading.Thread(target=self._flusher, name="sluice-answers", daemon=True)
            self.thread.start()
        if not self.wake.is_set():
            self.wake.set()
        return not self.broken

    def send(self, answer, body):
        """Send what is held and this answer, in one write when it is small. False once the
        connection is broken."""
        with self.lock:
            if len(body) > _HOLD_BYTES:
                self._send_held()
                if not self.broken:
                    try:
                        protocol.write_frame(self.conn, answer, body)
                    except OSError:
                        self.broken = True
            else:
                self.held.append(protocol.encode_frame(answer, body))
                self._send_held()
        return not self.broken

    def flush(self):
        """Send what is held. False once the connection is broken."""
        with self.lock:
            self._send_held()
        return not self.broken

    def close(self):
        self.flush()
        self.closed = True
        self.wake.set()

    def _send_held(self):
        if self.held and not self.broken:
            try:
                self.conn.sendall(b"".join(self.held))
            except OSError:
                self.broken = True
        self.held = []
        self.held_bytes = 0

    def _flusher(self):
        while not self.closed:
            self.wake.wait()
            while not self.closed:
                time.sleep(_HOLD_SECONDS)
                with self.lock:
                    if self.held and time.monotonic() - self.since >= _HOLD_SECONDS:
                        self._send_held()
                    if not self.held:
                        self.wake.clear()
                        break


def _die_with_parent():
    """Ask Linux to send SIGTERM when the replica that started us dies, even by SIGKILL, so a
    worker never outlives its replica. Elsewhere (or without ctypes) this does nothing."""
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError, ImportError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        sys.exit(EXIT_OK)


def main(argv=None):
    _die_with_parent()
    faulthandler.enable()
    try:
        sys.stdout.reconfigure(line_buffering=True)
    except (AttributeError, ValueError):
        pass
    args = parse_args(sys.argv[1:] if argv is None else argv)
    app = boot(args)
    server = Server(app, args.socket)
    try:
        server.bind()
    except OSError as ex:
        _eprint(f"sluice_worker: cannot listen on {args.socket}: {ex}")
        return EXIT_INTERNAL
    server.serve_forever()
    return EXIT_OK
