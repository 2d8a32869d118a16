"""Framing of the replica <-> worker channel.

One frame, in both directions::

    u32 big-endian  length of the JSON header
    bytes           the header, UTF-8 JSON (an object)
    u64 big-endian  length of the body
    bytes           the body

The worker answers every request frame with exactly one response frame carrying the same ``id``,
in the order the requests came. The replica may write the next requests before it has read the
answer to the current one (it does while every worker is busy), so the worker finds them waiting.
"""

import json
import struct

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")

# Bodies up to this size are sent with the header in one write; larger ones separately, so a big
# body is never copied just to prepend a few bytes.
_COALESCE_LIMIT = 64 * 1024


class ProtocolError(Exception):
    """The peer sent something that is not a frame; the connection must be dropped."""


def _decode_header(header_bytes):
    try:
        header = json.loads(header_bytes)
    except ValueError as ex:
        raise ProtocolError(f"frame header is not UTF-8 JSON: {ex}") from None
    if not isinstance(header, dict):
        raise ProtocolError("frame header is not a JSON object")
    return header


class FrameReader:
    """Reads frames from a connected socket through its own buffer, so that it can tell whether a
    whole frame is already here (``has_frame``) without blocking: the worker then knows that the
    replica has written the next request and holds its answer until the requests buffered are done
    (one write and one wake-up of the replica for several answers)."""

    def __init__(self, sock, chunk=64 * 1024):
        self.sock = sock
        self.chunk = chunk
        self.buf = bytearray()
        self.pos = 0

    def _available(self):
        return len(self.buf) - self.pos

    def _frame_length(self):
        """Length of the frame at the read position when all of it is buffered, else None."""
        have = self._available()
        if have < 4:
            return None
        (header_len,) = _U32.unpack_from(self.buf, self.pos)
        if have < 4 + header_len + 8:
            return None
        (body_len,) = _U64.unpack_from(self.buf, self.pos + 4 + header_len)
        total = 4 + header_len + 8 + body_len
        return total if have >= total else None

    def has_frame(self):
        return self._frame_length() is not None

    def _fill(self):
        if self.pos:
            del self.buf[: self.pos]
            self.pos = 0
        data = self.sock.recv(self.chunk)
        if data:
            self.buf += data
        return len(data)

    def read_frame(self):
        """The next frame, ``(header: dict, body: bytes)``, waiting for it if need be; ``None`` on a clean
        end of stream (EOF before the first byte of a frame)."""
        while True:
            total = self._frame_length()
            if total is not None:
                break
            if self._fill() == 0:
                if self._available() == 0:
                    return None
                raise ProtocolError("connection closed inside a frame")
        start = self.pos
        (header_len,) = _U32.unpack_from(self.buf, start)
        header_bytes = bytes(self.buf[start + 4 : start + 4 + header_len])
        body = bytes(self.buf[start + 4 + header_len + 8 : start + total])
        self.pos = start + total
        return _decode_header(header_bytes), body


def _frame_head(header, body_len):
    header_bytes = encode_header(header)
    return b"".join((_U32.pack(len(header_bytes)), header_bytes, _U64.pack(body_len)))


def encode_frame(header, body):
    """One frame as bytes."""
    return _frame_head(header, len(body)) + body


def encode_header(header):
    return json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def write_frame(sock, header, body):
    """Send one frame on a connected socket."""
    if len(body) <= _COALESCE_LIMIT:
        sock.sendall(encode_frame(header, body))
    else:
        sock.sendall(_frame_head(header, len(body)))
        sock.sendall(body)
