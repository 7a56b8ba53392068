"""The worker's sampler against the ONNX engine's (src/session/sampler.ts): the same PRNG
draws and the same choices for the same settings (reference values printed by the TS code)."""
import torch

from tools.casa_worker.sampler import Mulberry32, Sampler


def test_mulberry32_matches_the_engine():
    r = Mulberry32(12345)
    assert [r.next() for _ in range(4)] == [0.9797282677609473, 0.3067522644996643, 0.484205421525985, 0.817934412509203]


def test_processors_and_draw_match_the_engine():
    s = Sampler({"temperature": 0.7, "topK": 3, "repetitionPenalty": 1.3, "repetitionPenaltyDecay": 0.9,
                 "repetitionCountClamp": 5, "penaltyIgnore": [5], "eosBias": 0.5, "stopIds": [5, 4], "stopBias": 0.95,
                 "noRepeatNgramSize": 2, "noRepeatNgramWindow": 8, "seed": 7}, 6)
    logits = torch.tensor([1.0, 2.0, -0.5, 1.5, 0.3, 1.9])
    s.fed([0, 1, 2])
    out = []
    for _ in range(12):
        t = s.sample(logits)
        s.observe(t)
        out.append(t)
    assert out == [1, 1, 5, 5, 5, 5, 5, 3, 5, 5, 1, 1]


def test_greedy_is_the_raw_argmax_unless_processors_are_asked_for():
    base = {"temperature": 0.0, "topK": 0, "repetitionPenalty": 10.0, "repetitionPenaltyDecay": 1.0,
            "repetitionCountClamp": 5, "penaltyIgnore": [], "eosBias": 0.0, "stopIds": [2], "seed": 1,
            "noRepeatNgramSize": 2, "noRepeatNgramWindow": 10}
    logits = torch.tensor([0.0, 3.0, 1.0])
    plain = Sampler(base, 3)
    plain.observe(1)
    assert plain.sample(logits) == 1
    processed = Sampler({**base, "greedyProcessors": True}, 3)
    processed.observe(1)
    assert processed.sample(logits) == 2  # 3/10 < 1


def test_ngram_ban_spans_frames_and_spares_stop_tokens():
    s = Sampler({"temperature": 0.0, "topK": 0, "repetitionPenalty": 1.0, "repetitionPenaltyDecay": 0.99,
                 "repetitionCountClamp": 5, "penaltyIgnore": [], "eosBias": 0.0, "stopIds": [9], "seed": 1,
                 "noRepeatNgramSize": 3, "noRepeatNgramWindow": 60, "greedyProcessors": True}, 10)
    s.fed([4, 5, 9])  # one frame: "4 5" then a stop
    s.fed([4, 5, 6, 1, 4, 5])  # the next: after "4 5" again, 6 is banned; 9 (a stop) is not
    assert s.banned() == [6]
    logits = torch.zeros(10)
    logits[6] = 5.0
    logits[7] = 1.0
    assert s.sample(logits) == 7
