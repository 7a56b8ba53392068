import os
import subprocess
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, ROOT)
torch.set_num_threads(1)
BUNDLE = os.path.join(ROOT, "models", "casa-tiny")


@pytest.fixture(scope="session")
def clip_frames() -> np.ndarray:
    """examples/test-1.mp4 at 2 fps and casa-tiny's 64x64, as casa-live's ingest delivers it."""
    ffmpeg = os.environ.get("FFMPEG_PATH", "ffmpeg")
    raw = subprocess.run([ffmpeg, "-v", "error", "-i", os.path.join(ROOT, "examples", "test-1.mp4"), "-vf", "fps=2,scale=64:64",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, 64, 64, 3)


@pytest.fixture(scope="session")
def torch_adapter():
    from tools.casa_worker.adapters.torch_bundle import TorchBundleAdapter

    return TorchBundleAdapter(BUNDLE, "cpu", lambda line: None)


def greedy_options(**over):
    """Session options as casa-live sends them for casa-tiny at temperature 0."""
    opts = {"temperature": 0.0, "topK": 256, "repetitionPenalty": 1.15, "repetitionPenaltyDecay": 0.99,
            "repetitionCountClamp": 5, "penaltyIgnore": [38, 3], "eosBias": 1.0, "stopBias": 1.0,
            "noRepeatNgramSize": 0, "noRepeatNgramWindow": 60, "seed": 1, "maxNewTokensPerFrame": 24,
            "maxContextTokens": 256, "evictChunk": 64, "sinkTokens": None, "fps": 2.0, "tokenGranularity": "word",
            "realtimeDeadline": False}
    opts.update(over)
    return opts
