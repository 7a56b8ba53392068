"""The worker's serving loop (docs/worker-protocol.md).

Two threads: the reader answers `ping` and `cut` at once (so casa-live can tell a busy
worker from a dead one, and cut a frame while it is being captioned) and queues every
other request; the main thread runs them in order, one at a time — frames of different
sessions interleave at frame granularity, which is all a CASA model needs, since a CASA
layer's streaming state lives for one frame only. The worker exits when casa-live closes
the connection or goes away.
"""
from __future__ import annotations

import os
import queue
import resource
import sys
import threading
import time
import traceback
from typing import Any, Callable, Dict, Optional

from .protocol import Channel, ProtocolError, WorkerError
from .session import Session

Handler = Callable[["Worker", Dict[str, Any]], Dict[str, Any]]


def log(line: str) -> None:
    sys.stderr.write(f"casa-worker: {line}\n")
    sys.stderr.flush()


class Worker:
    def __init__(self, channel: Channel, adapter: Any):
        self.channel = channel
        self.adapter = adapter
        self.sessions: Dict[int, Session] = {}
        self.jobs: "queue.Queue[Optional[Dict[str, Any]]]" = queue.Queue()
        self.next_session = 1
        self.frames = 0
        self.started = time.monotonic()

    # ---------------------------------------------------------------- reader thread
    def read_loop(self) -> None:
        try:
            while True:
                msg = self.channel.receive()
                if msg is None:
                    log("casa-live closed the connection; exiting")
                    os._exit(0)
                kind = msg["t"]
                if kind == "ping":
                    self.channel.send({"t": "pong", "id": msg["id"]})
                elif kind == "cut":
                    session = self.sessions.get(msg["session"])
                    if session is not None:
                        session.cut.set()
                else:
                    self.jobs.put(None if kind == "shutdown" else msg)
                    if kind == "shutdown":
                        return
        except ProtocolError as err:
            log(f"protocol error: {err.message}")
            self._send_quietly(err.to_message())
            os._exit(2)
        except OSError as err:
            log(f"connection lost ({err}); exiting")
            os._exit(0)

    def _send_quietly(self, msg: Dict[str, Any]) -> None:
        try:
            self.channel.send(msg)
        except OSError:
            pass

    # ---------------------------------------------------------------- main thread
    def serve(self) -> None:
        threading.Thread(target=self.read_loop, name="casa-worker-reader", daemon=True).start()
        while True:
            msg = self.jobs.get()
            if msg is None:
                return
            reply = self.handle(msg)
            self.channel.send(reply)

    def handle(self, msg: Dict[str, Any]) -> Dict[str, Any]:
        ids = {k: msg[k] for k in ("id", "session") if k in msg}
        try:
            return HANDLERS[msg["t"]](self, msg)
        except WorkerError as err:
            if msg["t"] == "frame" and err.code != "bad_frame":
                self._drop(msg["session"])  # the frame was under way: the caches may be half updated
            return err.to_message(**ids)
        except Exception as err:  # a model failure: the session's caches may be half updated
            traceback.print_exc(file=sys.stderr)
            if msg["t"] == "frame":
                self._drop(msg["session"])
                return WorkerError("frame_failed", f"the model failed on a frame ({type(err).__name__}: {err})").to_message(**ids)
            return WorkerError("internal", f"{type(err).__name__}: {err}").to_message(**ids)

    def _session(self, msg: Dict[str, Any]) -> Session:
        session = self.sessions.get(msg["session"])
        if session is None:
            raise WorkerError("no_session", f"session {msg['session']} is not open")
        return session

    def _drop(self, sid: int) -> None:
        session = self.sessions.pop(sid, None)
        if session is not None:
            try:
                self.adapter.end_frame(session.opened)
            except Exception:
                traceback.print_exc(file=sys.stderr)

    # ---------------------------------------------------------------- requests
    def on_open(self, msg: Dict[str, Any]) -> Dict[str, Any]:
        sid = self.next_session
        self.sessions[sid] = Session(sid, self.adapter, msg["options"])
        self.next_session += 1
        return {"t": "opened", "id": msg["id"], "session": sid}

    def on_frame(self, msg: Dict[str, Any]) -> Dict[str, Any]:
        reply = self._session(msg).caption_frame(msg, self.channel.send)
        self.frames += 1
        return reply

    def on_close(self, msg: Dict[str, Any]) -> Dict[str, Any]:
        self.sessions.pop(msg["session"], None)
        return {"t": "closed", "id": msg["id"], "session": msg["session"]}

    def on_stats(self, msg: Dict[str, Any]) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "t": "stats", "id": msg["id"], "sessions": len(self.sessions), "frames": self.frames,
            "uptimeS": time.monotonic() - self.started, "maxRssKiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        }
        if isinstance(msg.get("session"), int):
            out["session"] = msg["session"]
            out["stats"] = self._session(msg).stats()
        return out


HANDLERS: Dict[str, Handler] = {
    "open": Worker.on_open,
    "frame": Worker.on_frame,
    "close": Worker.on_close,
    "stats": Worker.on_stats,
}
