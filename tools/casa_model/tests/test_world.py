import dataclasses
import hashlib

import numpy as np

from tools.casa_model.data import caption_text
from tools.casa_model.tokenizer import ByteLevelBPE, train_bpe
from tools.casa_model.world import COLOURS, DIRECTIONS, make_clip, render, render_clip
from tools.casa_model.evaluate import score


def _digest(seed):
    clip = make_clip(seed, 20)
    return hashlib.sha256(render_clip(clip, 64).tobytes() + "\n".join(clip.captions).encode()).hexdigest()


def test_world_is_deterministic_from_seed():
    assert _digest(11) == _digest(11)
    assert _digest(11) != _digest(12)


def test_captions_use_history_words_and_silence():
    caps = [c for s in range(60) for c in make_clip(s, 40).captions]
    words = " ".join(caps).split()
    for w in ("it", "another", "again", "meets", "leaves", "grows", "shrinks", "stops", "turns", "enters"):
        assert w in words, w
    silent = sum(1 for c in caps if not c) / len(caps)
    assert 0.1 < silent < 0.5


def test_every_named_object_is_visible_or_just_left():
    for s in range(30):
        clip = make_clip(s, 40)
        for f in clip.frames:
            if f.caption.endswith("enters from the left"):
                assert any(o.x < 0.2 and o.direction == "right" for o in f.objects)


def test_again_is_decided_by_the_objects_last_two_motion_captions():
    """Replays the commentary alone: "again" iff the direction is one of the last two that
    the same object's motion captions named (a fresh history for each entering object)."""
    agains = 0
    for s in range(40):
        history = {}
        for f in make_clip(s, 60).frames:
            words = f.caption.split()
            if "enters" in words:
                history[words[words.index("enters") - 1]] = []
            verb = next((v for v in ("moves", "turns") if v in words), None)
            direction = words[words.index(verb) + 1] if verb else None
            if direction not in DIRECTIONS:  # not a motion ("turns green")
                continue
            shape = words[1] if words[0] == "the" else f.objects[0].shape  # "it": the only object
            assert ("again" in words) == (direction in history[shape][-2:]), (s, f.caption, history[shape])
            agains += "again" in words
            history[shape].append(direction)
    assert agains > 20


def test_tokenizer_round_trip_and_hf_json(tmp_path, tok):
    text = " another big yellow triangle enters from the bottom"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    again = ByteLevelBPE.load(str(path))
    assert again.encode(text) == ids
    assert again.encode("<|im_start|>user\nhi<|im_end|>")[0] == tok.token_id("<|im_start|>")


def test_score():
    s = score([("it stops", "it stops"), ("", ""), ("it moves left", "it moves right")])
    assert s["frameExactMatch"] == round(2 / 3, 4)
    assert abs(s["tokenF1"] - 4 / 5) < 1e-3


def test_a_change_halo_marks_the_changed_object_on_its_frame_only():
    changes = 0
    for s in range(30):
        clip = make_clip(s, 40)
        frames = render_clip(clip, 64)
        for k, f in enumerate(clip.frames):
            words = f.caption.split()
            haloed = [o for o in f.objects if o.halo is not None]
            is_change = bool(words) and (words[-1] in ("grows", "shrinks") or (len(words) <= 4 and words[-1] in COLOURS))
            if not is_change:
                assert not haloed, (s, k, f.caption)
                continue
            changes += 1
            assert len(haloed) == 1, (s, k, f.caption)
            o = haloed[0]
            if words[0] == "the":
                assert words[1] == o.shape
            # the halo has the previous colour: another colour for "turns", the same for a size change
            assert (o.halo != o.colour) == (words[-1] in COLOURS)
            # and it is drawn: without it the frame would look different
            plain = render(clip.background, [dataclasses.replace(p, halo=None) for p in f.objects], 64)
            assert np.abs(frames[k].astype(int) - plain.astype(int)).max() > 40
    assert changes > 30
