"""A tiny client for sluice_worker: starts the worker as a subprocess on a temporary socket, waits
for ``SLUICE_WORKER_READY`` and speaks the framed protocol (see python/sluice_worker/README.md)."""

import atexit
import ctypes
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READY = "SLUICE_WORKER_READY"


@dataclass
class Reply:
    status: int
    headers: list  # [(name, value)]
    body: bytes
    id: int = 0

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def content_type(self):
        return self.header("content-type")

    def json(self):
        return json.loads(self.body)


def encode_frame(header, body=b""):
    h = json.dumps(header).encode("utf-8")
    return struct.pack(">I", len(h)) + h + struct.pack(">Q", len(body)) + body


def recv_exact(sock, n):
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise EOFError("worker closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(sock):
    (hlen,) = struct.unpack(">I", recv_exact(sock, 4))
    header = json.loads(recv_exact(sock, hlen))
    (blen,) = struct.unpack(">Q", recv_exact(sock, 8))
    return header, recv_exact(sock, blen)


@dataclass
class WorkerProcess:
    proc: subprocess.Popen
    socket_path: str
    stdout_lines: list = field(default_factory=list)
    stderr_lines: list = field(default_factory=list)
    _sock: socket.socket = None
    _next_id: int = 1

    @property
    def stdout(self):
        return "".join(self.stdout_lines)

    @property
    def stderr(self):
        return "".join(self.stderr_lines)

    def wait_output(self, needle, stream="stderr", timeout=5.0):
        """Wait until ``needle`` shows up in the worker's stderr (or stdout); True if it did."""
        deadline = time.monotonic() + timeout
        while True:
            if needle in getattr(self, stream):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def connect(self):
        if self._sock is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.socket_path)
            self._sock = s
        return self._sock

    def disconnect(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def request(self, method="POST", path="/score", query="", headers=(), body=b""):
        if isinstance(body, str):
            body = body.encode("utf-8")
        sock = self.connect()
        rid = self._next_id
        self._next_id += 1
        header = {
            "id": rid,
            "method": method,
            "path": path,
            "query": query,
            "headers": [[k.lower(), v] for k, v in headers],
        }
        sock.sendall(encode_frame(header, body))
        rh, rb = read_frame(sock)
        assert rh["id"] == rid, rh
        return Reply(rh["status"], [tuple(h) for h in rh["headers"]], rb, rh["id"])

    def post_json(self, obj, path="/score", headers=()):
        return self.request("POST", path, "", [("content-type", "application/json"), *headers],
                            json.dumps(obj).encode())

    def stop(self, timeout=10):
        self.disconnect()
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def _pump(stream, sink, ready_event=None):
    for line in iter(stream.readline, ""):
        sink.append(line)
        if ready_event is not None and line.strip() == READY:
            ready_event.set()
    stream.close()


def start_worker(entry_script, app_root=None, env=None, python=None, timeout=60, expect_ready=True,
                 python_flags=()):
    """Start ``python -m sluice_worker``; returns a WorkerProcess once READY (or once it exits when
    ``expect_ready`` is False). ``python_flags=("-S",)`` hides site-packages: a bare environment."""
    sock_dir = tempfile.mkdtemp(prefix="sluice-w-")
    # Removed when the test run ends, whether or not the test stopped its worker.
    atexit.register(shutil.rmtree, sock_dir, True)
    sock_path = os.path.join(sock_dir, "w.sock")
    cmd = [python or sys.executable, *python_flags, "-m", "sluice_worker", "--socket", sock_path, "--entry-script", entry_script]
    if app_root:
        cmd += ["--app-root", app_root]
    full_env = dict(os.environ)
    full_env.pop("AML_APP_ROOT", None)
    full_env.pop("AZUREML_ENTRY_SCRIPT", None)
    full_env.update(env or {})
    full_env["PYTHONPATH"] = PYTHON_DIR + (os.pathsep + full_env["PYTHONPATH"] if full_env.get("PYTHONPATH") else "")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)
    w = WorkerProcess(proc, sock_path)
    ready = threading.Event()
    threading.Thread(target=_pump, args=(proc.stdout, w.stdout_lines, ready), daemon=True).start()
    threading.Thread(target=_pump, args=(proc.stderr, w.stderr_lines), daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready.wait(0.05):
            return w
        if proc.poll() is not None:
            time.sleep(0.2)  # let the pump threads drain
            if expect_ready:
                raise RuntimeError(f"worker exited with {proc.returncode} before READY:\n{w.stderr}")
            return w
    proc.kill()
    raise RuntimeError(f"worker not READY within {timeout}s:\n{w.stderr}")


# The start of a scoring script (online or batch) whose init() starts a thread that stays alive:
# a thread other than the main one, for signal_other_thread.
THREAD_IN_INIT = ("import threading, time\n"
                  "def init():\n"
                  "    threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n")


def signal_other_thread(pid, signum):
    """Send ``signum`` to a thread of process ``pid`` other than its main thread (``tgkill``), as
    the kernel may do with a signal sent to the whole process."""
    tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
    assert tids, f"process {pid} has no thread but its main one"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.tgkill(pid, tids[0], signum) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
