"""Training sequences: which frames they hold and how windows are numbered."""
import random

from tools.casa_model.data import build_sequence, misnamed_history, redraw_for_two_objects, training_frames
from tools.casa_model.world import SHAPES, make_clip


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


def test_a_misnamed_caption_names_another_shape_in_an_earlier_frame():
    clip = make_clip(5, 48)
    keep = list(range(10, 34))
    rng = random.Random(2)
    seen = 0
    for _ in range(200):
        for j, caption in misnamed_history(clip, keep, rng, 1.0).items():
            seen += 1
            assert j in keep[:-1], "the last frame is never replaced: later frames stay supervised"
            truth, slip = clip.frames[j].caption.split(), caption.split()
            diff = [(a, b) for a, b in zip(truth, slip) if a != b]
            assert len(truth) == len(slip) and len(diff) == 1
            assert diff[0][0] in SHAPES and diff[0][1] in SHAPES
    assert seen == 200
    assert misnamed_history(clip, keep, random.Random(2), 0.0) == {}


def test_no_misnaming_draws_nothing_from_the_generator():
    # so that recipes without it train on exactly the batches they did before it existed
    rng = random.Random(7)
    misnamed_history(make_clip(5, 48), list(range(24)), rng, 0.0)
    assert rng.random() == random.Random(7).random()


def test_a_misnamed_window_is_input_only(tok):
    clip = make_clip(5, 48)
    keep = list(range(24))
    replaced = misnamed_history(clip, keep, random.Random(1), 1.0)
    (j, caption), = replaced.items()
    plain, slipped = build_sequence(clip, tok, keep), build_sequence(clip, tok, keep, replaced)
    assert caption in tok.decode(slipped.ids) and clip.frames[j].caption not in tok.decode(slipped.ids)
    window = keep.index(j) + 1
    assert all(lab == -100 for lab, w in zip(slipped.labels, slipped.win) if w == window)
    # every other window is supervised on the truth, exactly as without the slip
    def targets(seq, w):
        return [lab for lab, x in zip(seq.labels, seq.win) if x == w]
    for w in set(plain.win) - {0, window}:
        assert targets(slipped, w) == targets(plain, w)


def test_redrawn_sequences_end_among_two_objects():
    clips = [make_clip(s, 48) for s in range(40)]
    rng = random.Random(4)
    draws = [redraw_for_two_objects(clips, 48, 24, rng, 0.45, 0.2, 1.0) for _ in range(200)]
    assert sum(d is not None for d in draws) > 180
    for d in filter(None, draws):
        i, keep = d
        assert len(clips[i].frames[keep[-1]].objects) == 2
        assert keep == list(range(keep[0], keep[-1] + 1)) and keep[-1] < 48
    hits = sum(redraw_for_two_objects(clips, 48, 24, random.Random(s), 0.45, 0.2, 0.3) is not None for s in range(400))
    assert 80 < hits < 160, "about the share asked for is redrawn"


def test_no_redrawing_draws_nothing_from_the_generator():
    rng = random.Random(7)
    assert redraw_for_two_objects([make_clip(5, 48)], 48, 24, rng, 0.45, 0.2, 0.0) is None
    assert rng.random() == random.Random(7).random()
