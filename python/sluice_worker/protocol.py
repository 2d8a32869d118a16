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


def _read_exact(rfile, n):
    data = rfile.read(n)
    if data is None or len(data) != n:
        raise ProtocolError(f"connection closed inside a frame (wanted {n} bytes, got {len(data or b'')})")
    return data


def read_frame(rfile):
    """Read one frame from a buffered binary reader.

    Returns ``(header: dict, body: bytes)``, or ``None`` on a clean end of stream (EOF before the
    first byte of a frame).
    """
    prefix = rfile.read(4)
    if not prefix:
        return None
    if len(prefix) != 4:
        raise ProtocolError("connection closed inside a frame length")
    (header_len,) = _U32.unpack(prefix)
    header_bytes = _read_exact(rfile, header_len)
    (body_len,) = _U64.unpack(_read_exact(rfile, 8))
    body = _read_exact(rfile, body_len) if body_len else b""
    try:
        header = json.loads(header_bytes)
    except ValueError as ex:
        raise ProtocolError(f"frame header is not UTF-8 JSON: {ex}") from None
    if not isinstance(header, dict):
        raise ProtocolError("frame header is not a JSON object")
    return header, body


def encode_header(header):
    return json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def write_frame(sock, header, body):
    """Send one frame on a connected socket."""
    header_bytes = encode_header(header)
    head = _U32.pack(len(header_bytes)) + header_bytes + _U64.pack(len(body))
    if len(body) <= _COALESCE_LIMIT:
        sock.sendall(head + body)
    else:
        sock.sendall(head)
        sock.sendall(body)
