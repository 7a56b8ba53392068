"""The worker process over its socket, as casa-live talks to it (docs/worker-protocol.md):
hello and ready, sessions, a malformed frame (refused, the session goes on), pings
answered during a frame, an unknown session, and garbage from the peer (the worker says
why and exits)."""
import os
import socket
import struct
import subprocess
import sys
import tempfile

import msgpack
import pytest

from tools.casa_worker.protocol import encode

from .conftest import BUNDLE, ROOT, greedy_options


class Peer:
    """casa-live's end: listens, starts the worker, reads its messages."""

    def __init__(self):
        self.dir = tempfile.mkdtemp()
        path = os.path.join(self.dir, "w.sock")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(1)
        server.settimeout(120)
        self.proc = subprocess.Popen([sys.executable, "-m", "tools.casa_worker", "--socket", path, "--adapter", "torch",
                                      "--model", BUNDLE, "--threads", "1"], cwd=ROOT, stderr=subprocess.PIPE)
        self.conn, _ = server.accept()
        self.conn.settimeout(120)
        server.close()

    def send(self, msg):
        self.conn.sendall(encode(msg))

    def recv(self):
        (n,) = struct.unpack(">I", self._exact(4))
        return msgpack.unpackb(self._exact(n), raw=False)

    def _exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.conn.recv(n - len(data))
            assert chunk, "the worker closed the connection"
            data += chunk
        return data


@pytest.fixture(scope="module")
def peer():
    p = Peer()
    yield p
    p.proc.kill()
    p.proc.wait()


def test_handshake_sessions_and_refusals(peer, clip_frames):
    hello = peer.recv()
    assert hello["t"] == "hello" and hello["protocol"] == 1 and hello["pid"] == peer.proc.pid
    ready = peer.recv()
    assert ready["t"] == "ready" and ready["model"]["name"] == "casa-tiny" and ready["model"]["stopIds"] == [3]
    assert ready["model"]["acceptsPrompt"] is False
    peer.send({"t": "open", "id": 1, "options": greedy_options(prompt="Describe the video.")})
    refused = peer.recv()
    assert refused["t"] == "error" and refused["code"] == "bad_options" and "fixed prompt" in refused["message"]
    peer.send({"t": "open", "id": 2, "options": greedy_options()})
    opened = peer.recv()
    assert opened == {"t": "opened", "id": 2, "session": 1}
    peer.send({"t": "frame", "id": 3, "session": 1, "index": 0, "pts": 0.0, "width": 64, "height": 64, "rgb": b"\0" * 10})
    bad = peer.recv()
    assert bad["t"] == "error" and bad["code"] == "bad_frame" and bad["id"] == 3
    frame = {"t": "frame", "id": 4, "session": 1, "index": 0, "pts": 0.0, "width": 64, "height": 64, "rgb": clip_frames[0].tobytes()}
    peer.send(frame)
    peer.send({"t": "ping", "id": 5})
    got = []
    while not got or got[-1]["t"] != "caption":
        got.append(peer.recv())
    tokens = [m["text"] for m in got if m["t"] == "token"]
    caption = got[-1]
    assert caption["text"] == "a big yellow square enters from the bottom" and "".join(tokens).strip() == caption["text"]
    assert caption["stop"] == 3 and caption["end"] == "stop" and caption["stats"]["frames"] == 1
    assert {"t": "pong", "id": 5} in got  # the reader answers pings while the frame is captioned
    peer.send({"t": "frame", **{k: v for k, v in frame.items() if k != "t"}, "session": 9, "id": 6})
    assert peer.recv()["code"] == "no_session"
    peer.send({"t": "stats", "id": 7, "session": 1})
    stats = peer.recv()
    assert stats["sessions"] == 1 and stats["frames"] == 1 and stats["stats"]["textTokensFed"] > 81
    peer.send({"t": "close", "id": 8, "session": 1})
    assert peer.recv() == {"t": "closed", "id": 8, "session": 1}


def test_garbage_from_the_peer_ends_the_worker_with_a_reason(peer):
    peer.conn.sendall(struct.pack(">I", 5) + b"\xc1\xc1\xc1\xc1\xc1")  # 0xc1 is never valid msgpack
    err = peer.recv()
    assert err["t"] == "error" and err["code"] == "protocol" and "msgpack" in err["message"]
    assert peer.proc.wait(30) == 2
