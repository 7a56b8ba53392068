"""Demo and test clips: world clips encoded as H.264 MP4 with ffmpeg, with their ground truth
as JSON and SRT."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Dict, List

import numpy as np

from .world import FPS, make_clip, render

VIDEO_FPS = 10  # each world frame is held for 1/FPS s; ffmpeg samples back at FPS


def _srt_time(t: float) -> str:
    ms = int(round(t * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def truth_srt(captions: List[str]) -> str:
    out, n = [], 0
    for i, c in enumerate(captions):
        if not c:
            continue
        n += 1
        out.append(f"{n}\n{_srt_time(i / FPS)} --> {_srt_time((i + 1) / FPS)}\n{c}\n")
    return "\n".join(out)


def write_clip(path_base: str, seed: int, frames: int, size: int = 256, ffmpeg: str = "ffmpeg") -> Dict:
    clip = make_clip(seed, frames)
    hold = int(VIDEO_FPS / FPS)
    cmd = [ffmpeg, "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size}x{size}",
           "-r", str(VIDEO_FPS), "-i", "-", "-c:v", "libx264", "-preset", "veryslow", "-crf", "20",
           "-pix_fmt", "yuv420p", "-movflags", "+faststart", path_base + ".mp4"]
    with subprocess.Popen(cmd, stdin=subprocess.PIPE) as proc:  # closes stdin and waits, also on an error
        for f in clip.frames:
            img = render(clip.background, f.objects, size, supersample=2)
            for _ in range(hold):
                proc.stdin.write(img.tobytes())
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed encoding {path_base}.mp4")
    truth = {"seed": seed, "fps": FPS, "frames": frames, "captions": clip.captions}
    with open(path_base + ".json", "w") as f:
        json.dump(truth, f, indent=1)
    with open(path_base + ".srt", "w") as f:
        f.write(truth_srt(clip.captions))
    return truth


def write_examples(out_dir: str, demo_seed: int, test_seeds: List[int]) -> None:
    os.makedirs(out_dir, exist_ok=True)
    ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
    write_clip(os.path.join(out_dir, "demo"), demo_seed, 120, ffmpeg=ffmpeg)
    for i, s in enumerate(test_seeds):
        write_clip(os.path.join(out_dir, f"test-{i + 1}"), s, 40, ffmpeg=ffmpeg)
