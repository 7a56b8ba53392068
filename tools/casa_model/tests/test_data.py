"""Training sequences: which frames they hold and how windows are numbered."""
import random

from tools.casa_model.data import build_sequence, training_frames
from tools.casa_model.world import make_clip


def test_training_frames_cover_starts_gaps_and_late_windows():
    rng = random.Random(3)
    kinds = set()
    for _ in range(2000):
        keep = training_frames(48, 24, rng, p_window=0.35, p_gap=0.2)
        assert keep == list(range(keep[0], keep[-1] + 1)), "a sequence holds consecutive frames"
        assert 12 <= len(keep) <= 24 and keep[-1] < 48
        if keep[0] == 0:
            kinds.add("start")
        elif keep[-1] == 23:
            kinds.add("gap")
        if keep[-1] >= 24:
            kinds.add("late")
    assert kinds == {"start", "gap", "late"}


def test_no_late_windows_when_the_clip_is_no_longer_than_the_span():
    rng = random.Random(0)
    for _ in range(200):
        assert training_frames(24, 24, rng, p_window=1.0, p_gap=0.0) == list(range(24))


def test_kept_frames_are_numbered_from_one_in_sequence_order(tok):
    clip = make_clip(11, 40)
    seq = build_sequence(clip, tok, list(range(30, 36)))
    assert seq.frames == list(range(6))
    windows = sorted(set(w for w in seq.win if w > 0))
    assert windows == [1, 2, 3, 4, 5, 6]
    # the kept frames' captions are the clip's own (they follow the whole history)
    text = tok.decode([t for t, w in zip(seq.ids, seq.win) if w > 0])
    for j in range(30, 36):
        assert clip.frames[j].caption in text
