"""python -m tools.casa_worker --socket PATH --adapter torch|hf --model REF [--device auto|cpu|cuda]

Started by casa-live (src/worker/process.ts), which listens on PATH. The worker checks its
Python packages, connects, says `hello`, loads the model, says `ready` (or `fatal` with a
code and one sentence, also printed on stderr as a line `CASA_WORKER_FATAL {json}` for the
case the connection is not up), then serves until casa-live closes the connection.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import signal
import sys
import threading
import time
from typing import Callable, Dict, List

#: Packages per adapter, and how to install each (pinned as Kyutai's scripts pin them).
PACKAGES: Dict[str, List[str]] = {"torch": ["msgpack", "numpy", "torch", "onnx"], "hf": ["msgpack", "numpy", "torch"]}
INSTALL = {
    "msgpack": "pip install msgpack (Debian: apt-get install python3-msgpack)",
    "numpy": "pip install numpy (Debian: apt-get install python3-numpy)",
    "torch": "pip install torch==2.7.0 (Debian: apt-get install python3-torch)",
    "onnx": "pip install onnx (Debian: apt-get install python3-onnx)",
}
FATAL_PREFIX = "CASA_WORKER_FATAL "
EXIT_FATAL = 3


def fatal_line(code: str, message: str) -> None:
    sys.stderr.write(FATAL_PREFIX + json.dumps({"code": code, "message": message}) + "\n")
    sys.stderr.flush()


def check_packages(adapter: str) -> None:
    for name in PACKAGES[adapter]:
        try:
            importlib.import_module(name)
        except ImportError:
            fatal_line("missing_package", f"The Python at {sys.executable} lacks the package {name} (needed by the {adapter} adapter); install it: {INSTALL[name]}.")
            sys.exit(EXIT_FATAL)


def watch_parent() -> None:
    """Exit when casa-live goes away, even if the socket stays open (a SIGKILLed parent)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    parent = os.getppid()

    def poll() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=poll, name="casa-worker-parent", daemon=True).start()


def make_adapter(args: argparse.Namespace, log: Callable[[str], None]):
    if args.adapter == "torch":
        from .adapters.torch_bundle import TorchBundleAdapter

        return TorchBundleAdapter(args.model, args.device, log)
    from .adapters.hf import HfAdapter

    return HfAdapter(args.model, args.device, log, image_size=args.image_size)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.casa_worker")
    p.add_argument("--socket", required=True)
    p.add_argument("--adapter", choices=sorted(PACKAGES), required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--image-size", type=int, default=448)
    args = p.parse_args(argv)
    watch_parent()
    check_packages(args.adapter)

    import torch

    from .protocol import PROTOCOL_VERSION, WORKER_VERSION, WorkerError, connect
    from .server import Worker, log

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    channel = connect(args.socket)
    channel.send({"t": "hello", "protocol": PROTOCOL_VERSION, "worker": WORKER_VERSION, "pid": os.getpid(),
                  "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.cuda.is_available()})
    try:
        adapter = make_adapter(args, log)
    except WorkerError as err:
        fatal_line(err.code, err.message)
        channel.send({"t": "fatal", "code": err.code, "message": err.message})
        return EXIT_FATAL
    except ImportError as err:
        message = f"The Python at {sys.executable} lacks the package {err.name}; install it (see docs/worker-protocol.md)."
        fatal_line("missing_package", message)
        channel.send({"t": "fatal", "code": "missing_package", "message": message})
        return EXIT_FATAL
    channel.send({"t": "ready", "model": adapter.info()})
    Worker(channel, adapter).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
