import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tok():
    from tools.casa_model.tokenizer import train_bpe
    from tools.casa_model.world import make_clip
    from tools.casa_model.data import caption_text
    caps = [caption_text(c) for s in range(40) for c in make_clip(s, 30).captions if c]
    return train_bpe(caps, 80)
