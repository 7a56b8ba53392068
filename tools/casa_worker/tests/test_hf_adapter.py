"""The `hf` adapter driven over a STAND-IN of the released models' remote code
(tests/standin.py: the real code cannot be fetched here). Checks the per-frame call
sequence of Kyutai's live captioner — prompt only on frame 0, a bare image continuation
afterwards, CA state started and reset once per frame, the sampled stop token recorded in
the cache, positions contiguous — and that greedy captions through it equal the torch
adapter's, with and without context eviction."""
import pytest

from tools.casa_worker.adapters import hf
from tools.casa_worker.protocol import WorkerError
from tools.casa_worker.session import Session

from .conftest import greedy_options
from .standin import standin_loader

FRAMES = 16


def hf_adapter(torch_adapter, **kw):
    return hf.HfAdapter("standin/CASA-Qwen-standin" if kw.get("qwen", True) else "standin/CASA-Helium-standin", "cpu",
                        lambda line: None, image_size=64, loader=standin_loader(torch_adapter, **kw), env={})


def caption_all(adapter, frames, options):
    session = Session(1, adapter, options)
    out = []
    for i, f in enumerate(frames):
        msg = {"id": i, "index": i, "pts": i / 2, "width": 64, "height": 64, "rgb": f.tobytes()}
        out.append(session.caption_frame(msg, lambda m: None))
    return session, out


def per_frame(calls):
    """The model calls split at each start_ca_streaming_states."""
    frames = []
    for c in calls:
        if c["call"] == "start":
            frames.append([])
        frames[-1].append(c)
    return frames


def test_call_sequence_per_frame_follows_kyutais_scripts(torch_adapter, clip_frames):
    adapter = hf_adapter(torch_adapter, extra_stop=1)
    assert adapter.stop_ids == [3, 1]  # generation_config.eos_token_id is a list: every id stops a frame
    session, caps = caption_all(adapter, clip_frames[:FRAMES], greedy_options(penaltyIgnore=[3, 1], sinkTokens=81))
    model, processor = adapter.model, adapter.processor
    frames = per_frame(model.calls)
    assert len(frames) == FRAMES
    fed = 0
    for k, (calls, cap) in enumerate(zip(frames, caps)):
        kinds = [c["call"] for c in calls]
        assert kinds[0] == "start" and kinds[-1] == "reset" and kinds.count("start") == 1 and kinds.count("reset") == 1
        forwards = [c for c in calls if c["call"] == "forward"]
        prefill, steps = forwards[0], forwards[1:]
        assert prefill["image"] and not any(c["image"] for c in steps)
        assert prefill["first_gen_call"] and not any(c["first_gen_call"] for c in steps)
        assert prefill["mask"] == (1, prefill["past"] + len(prefill["ids"]))  # prefill mask spans the cache
        assert all(c["mask"] == (1, len(c["ids"])) for c in steps)
        # one forward per sampled token, then the stop token recorded in the cache before the reset
        assert [c["ids"][0] for c in steps[:-1]] == cap["ids"]
        assert steps[-1]["ids"] == [cap["stop"]] and cap["stop"] in (3, 1)
        assert prefill["past"] == fed - session.opened.state.context.evicted_tokens if k else prefill["past"] == 0
        fed += sum(len(c["ids"]) for c in forwards)
    # the prompt (system + user + assistant opening) on frame 0 only; later frames: one bare image message
    messages = processor.messages[1:]  # [0]: the adapter measured its prompt at load
    assert [m["role"] for m in messages[0]] == ["system", "user", "assistant"]
    assert messages[0][2]["content"][1] == {"type": "text", "text": hf.ASSISTANT_OPENING}
    assert all(m == [{"role": "assistant", "content": [{"type": "image", "image": None}]}] for m in messages[1:])
    assert processor.asst_start_seen[1] and all(s == [] for s in processor.asst_start_seen[2:])
    assert processor.asst_end_tokens == []


@pytest.mark.parametrize("cap", [None, 120])
def test_greedy_captions_equal_the_torch_adapters(torch_adapter, clip_frames, cap):
    options = greedy_options(sinkTokens=81, maxContextTokens=cap, evictChunk=16)
    hf_session, hf_caps = caption_all(hf_adapter(torch_adapter), clip_frames[:FRAMES], options)
    torch_session, torch_caps = caption_all(torch_adapter, clip_frames[:FRAMES], options)
    assert [c["text"] for c in hf_caps] == [c["text"] for c in torch_caps]
    assert any(c["text"] for c in hf_caps)
    if cap is not None:  # eviction happened, on both sides alike, and kept the cache under the cap
        assert hf_caps[-1]["stats"]["evictions"] > 0
        assert hf_caps[-1]["stats"]["evictions"] == torch_caps[-1]["stats"]["evictions"]
        assert hf_caps[-1]["stats"]["kvTokens"] <= cap


def test_helium_style_models_get_1d_positions_and_no_bos_on_continuations(torch_adapter, clip_frames):
    adapter = hf_adapter(torch_adapter, qwen=False, with_suppress_kw=False)
    assert not adapter.is_qwen and not adapter.suppress_bos_kw
    caption_all(adapter, clip_frames[:3], greedy_options(sinkTokens=81))  # the stand-in asserts (1, L) contiguous positions
    prefills = [c for c in adapter.model.calls if c["call"] == "forward" and c["image"]]
    bos = torch_adapter.tokenizer.token_id("<|pad|>")
    assert prefills[0]["ids"][0] == bos and all(p["ids"][0] != bos for p in prefills[1:])


def test_load_errors_are_one_sentence_with_a_code(tmp_path):
    with pytest.raises(WorkerError) as e:
        hf.resolve_repo("kyutai/CASA-Nope")
    assert e.value.code == "unknown_model"
    assert hf.resolve_repo("CASA-Qwen2_5-VL-3B-LiveCC") == ("kyutai/CASA-Qwen2_5-VL-3B-LiveCC", False)
    (tmp_path / "config.json").write_text('{"auto_map": {"AutoModel": "modeling_casa.CasaModel"}}')
    with pytest.raises(WorkerError) as e:
        hf.check_local_dir(str(tmp_path))
    assert e.value.code == "model_files" and "modeling_casa.py" in e.value.message and "weights" in e.value.message

    class GatedRepoError(Exception):
        pass

    class RepositoryNotFoundError(Exception):
        pass

    assert hf.explain_load_failure(GatedRepoError("401"), "kyutai/X", None).code == "gated_model"
    assert "HF_TOKEN" in hf.explain_load_failure(GatedRepoError("401"), "kyutai/X", None).message
    assert hf.explain_load_failure(RepositoryNotFoundError("404"), "org/x", "t").code == "unknown_model"


def test_no_gpu_is_said_plainly(monkeypatch):
    monkeypatch.setattr(hf.torch.cuda, "is_available", lambda: False)
    with pytest.raises(WorkerError) as e:
        hf.pick_device("auto")
    assert e.value.code == "no_gpu" and "CUDA GPU" in e.value.message
    assert hf.pick_device("cpu") == "cpu"
