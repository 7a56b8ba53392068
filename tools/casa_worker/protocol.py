"""The worker protocol (docs/worker-protocol.md): framing, message checks, typed errors.

A message is one msgpack map, sent as a frame: a 4-byte big-endian length, then that many
bytes. Every map has a string field "t" (its type). The peer that reads a frame it cannot
decode, or a map that breaks the rules below, treats the connection as broken.
"""
from __future__ import annotations

import socket
import struct
import threading
from typing import Any, Callable, Dict, Optional

import msgpack

PROTOCOL_VERSION = 1
WORKER_VERSION = "0.1.0"
#: Largest frame either side accepts (a 4K rgb24 frame is 24.9 MB).
MAX_FRAME_BYTES = 64 * 1024 * 1024
_HEADER = struct.Struct(">I")

#: Fields every request of a type must carry, with their Python types.
REQUEST_FIELDS: Dict[str, Dict[str, Any]] = {
    "open": {"id": int, "options": dict},
    "frame": {"id": int, "session": int, "index": int, "pts": (int, float), "width": int, "height": int, "rgb": bytes},
    "cut": {"session": int},
    "close": {"id": int, "session": int},
    "stats": {"id": int},
    "ping": {"id": int},
    "shutdown": {},
}


class WorkerError(Exception):
    """An error with a protocol code and one sentence for the user (docs/worker-protocol.md §Errors)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def to_message(self, **fields: Any) -> Dict[str, Any]:
        return {"t": "error", "code": self.code, "message": self.message, **fields}


class ProtocolError(WorkerError):
    def __init__(self, message: str):
        super().__init__("protocol", message)


def encode(message: Dict[str, Any]) -> bytes:
    body = msgpack.packb(message, use_bin_type=True)
    if len(body) > MAX_FRAME_BYTES:
        raise ProtocolError(f"message of {len(body)} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
    return _HEADER.pack(len(body)) + body


def _read_exact(sock: socket.socket, n: int) -> Optional[bytes]:
    """n bytes, or None at a clean end of stream before the first byte."""
    chunks = []
    got = 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            if got == 0:
                return None
            raise ProtocolError(f"the connection closed in the middle of a frame ({got} of {n} bytes)")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_message(sock: socket.socket) -> Optional[Dict[str, Any]]:
    """The next message, or None when the peer closed the connection."""
    header = _read_exact(sock, _HEADER.size)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    if length == 0 or length > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame length {length} is outside 1..{MAX_FRAME_BYTES}")
    body = _read_exact(sock, length)
    if body is None:
        raise ProtocolError("the connection closed after a frame header")
    try:
        message = msgpack.unpackb(body, raw=False)
    except Exception as err:  # msgpack raises several unrelated types
        raise ProtocolError(f"a frame is not valid msgpack ({err})") from None
    return check_request(message)


def check_request(message: Any) -> Dict[str, Any]:
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise ProtocolError("a message is not a map with a string field \"t\"")
    fields = REQUEST_FIELDS.get(message["t"])
    if fields is None:
        raise ProtocolError(f"unknown message type {message['t']!r}")
    for name, kind in fields.items():
        value = message.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ProtocolError(f"message {message['t']!r}: field {name!r} is missing or has the wrong type")
    return message


class Channel:
    """The worker's end of the connection: reads on one thread, writes from any under a lock."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._lock = threading.Lock()

    def send(self, message: Dict[str, Any]) -> None:
        data = encode(message)
        with self._lock:
            self.sock.sendall(data)

    def receive(self) -> Optional[Dict[str, Any]]:
        return read_message(self.sock)


def connect(path: str) -> Channel:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    return Channel(sock)


Sender = Callable[[Dict[str, Any]], None]
