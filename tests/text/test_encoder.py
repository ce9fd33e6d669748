"""The frozen text encoder: our BERT against sentence-transformers' own output (the fixture), and the cache.

tests/fixtures/minilm_embeddings.json was produced once by sentence-transformers 6.2.0 (see its "produced_by");
these tests never import sentence-transformers or transformers.
"""

import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from diffusekit.text import Bert, BertConfig, TextEncoder, encode_captions, pool
from diffusekit.text import cache as text_cache

FIXTURE = Path(__file__).parents[1] / "fixtures" / "minilm_embeddings.json"


@pytest.fixture(scope="module")
def encoder():
    torch.set_num_threads(1)
    return TextEncoder.load()


@pytest.fixture(scope="module")
def oracle():
    with open(FIXTURE, encoding="utf-8") as f:
        return json.load(f)


def test_embed_matches_sentence_transformers(encoder, oracle):
    sentences = oracle["sentences"]
    assert oracle["max_seq_length"] == encoder.max_length == 256
    with pytest.warns(UserWarning, match="truncated"):  # the last sentence is 301 tokens long
        ids, mask = encoder.tokenize(sentences)
    assert [row[m].tolist() for row, m in zip(ids, mask)] == oracle["input_ids"]

    with pytest.warns(UserWarning, match="truncated"):
        e = encoder.embed(sentences)
    ref = torch.tensor(oracle["embeddings"])
    assert e.shape == ref.shape == (len(sentences), 384) and e.dtype == torch.float32
    assert (e - ref).abs().max() < 1e-5
    assert ((e * ref).sum(1) > 1 - 1e-5).all()

    with pytest.warns(UserWarning, match="truncated"):
        tokens, mask = encoder.encode(sentences)
    for i, want in enumerate(oracle["token_embeddings_first4"]):
        want = torch.tensor(want)
        assert int(mask[i].sum()) == want.shape[0]
        assert (tokens[i, : want.shape[0], :4] - want).abs().max() < 1e-5


def test_truncation_warns_with_the_count(encoder):
    short = TextEncoder(encoder.bert, encoder.tokenizer, max_length=16)
    prompt = " ".join(["red"] * 20)  # 20 word pieces + [CLS] + [SEP] = 22 tokens: 6 over
    with pytest.warns(UserWarning, match=r"max_length=16 .* 6 tokens dropped .*prompt 1 lost 6") as rec:
        ids, mask = short.tokenize(["a cat", prompt])
    assert rec[0].filename == __file__  # the warning points at the caller, not inside diffusekit
    assert ids.shape == (2, 16) and bool(mask[1].all())
    assert ids[1, 0] == short.cls_id and ids[1, -1] == short.sep_id
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        short.tokenize(["a cat", " ".join(["red"] * 14)])  # exactly 16: no warning


def test_empty_prompt_is_cls_sep(encoder):
    ids, mask = encoder.tokenize(["", "a small red circle"])
    assert ids[0, :2].tolist() == [encoder.cls_id, encoder.sep_id] and mask[0].tolist()[:3] == [True, True, False]
    e = encoder.embed([""])
    assert torch.isfinite(e).all() and abs(float(e.norm()) - 1) < 1e-5


def test_encode_shapes_mask_and_batch_independence(encoder):
    prompts = ["a cat", "a small blue square above a green triangle on the left", ""]
    tokens, mask = encoder.encode(prompts)
    L = int(mask.sum(1).max())
    assert tokens.shape == (3, L, 384) and tokens.dtype == torch.float32
    assert mask.shape == (3, L) and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [4, L, 2]
    assert (tokens[~mask] == 0).all()  # padding rows are zero
    alone, alone_mask = encoder.encode(["a cat"])
    assert alone.shape == (1, 4, 384) and (alone[0] - tokens[0, :4]).abs().max() < 1e-5
    assert torch.allclose(pool(tokens, mask), encoder.embed(prompts))


def test_frozen(encoder):
    assert not encoder.bert.training
    assert not any(p.requires_grad for p in encoder.bert.parameters())
    assert not isinstance(encoder, torch.nn.Module)  # so a model holding it does not adopt its parameters
    with torch.enable_grad():
        tokens, _ = encoder.encode(["a red circle"])
    assert not tokens.requires_grad
    w = torch.ones(384, requires_grad=True)  # a trainable layer can read the tokens (not inference-mode tensors)
    (tokens @ w).sum().backward()
    assert w.grad is not None


def test_bad_inputs(encoder):
    with pytest.raises(TypeError, match="list"):
        encoder.encode("a red circle")
    with pytest.raises(ValueError, match="empty"):
        encoder.encode([])
    with pytest.raises(TypeError, match="prompt 1"):
        encoder.encode(["a", 3])
    with pytest.raises(ValueError, match="max_length"):
        TextEncoder(encoder.bert, encoder.tokenizer, max_length=1)


def test_bert_loading_is_strict():
    bert = Bert(BertConfig(vocab_size=10, max_position=8, dim=8, n_layer=1, n_head=2, mlp_dim=16))
    hf = {name: t.clone() for name, t in _hf_names(bert).items()}
    bert.load_state(hf)  # round trip through the checkpoint names works
    with pytest.raises(ValueError, match="missing"):
        bert.load_state({k: v for k, v in hf.items() if "query" not in k})
    with pytest.raises(ValueError, match="unexpected"):
        bert.load_state({**hf, "encoder.layer.0.extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="shape"):
        bert.load_state({**hf, "embeddings.word_embeddings.weight": torch.zeros(11, 8)})


def _hf_names(bert):
    """Our state dict under the checkpoint's names (the inverse of bert.our_key, written out independently)."""
    out = {}
    for k, v in bert.state_dict().items():
        for ours, theirs in (("embed.word.", "embeddings.word_embeddings."), ("embed.ln.", "embeddings.LayerNorm."),
                             ("embed.position.", "embeddings.position_embeddings."),
                             ("embed.token_type.", "embeddings.token_type_embeddings.")):
            k = k.replace(ours, theirs)
        if k.startswith("layers."):
            _, i, rest = k.split(".", 2)
            rest = {"attn.q.": "attention.self.query.", "attn.k.": "attention.self.key.",
                    "attn.v.": "attention.self.value.", "attn.proj.": "attention.output.dense.",
                    "ln1.": "attention.output.LayerNorm.", "fc.": "intermediate.dense.", "out.": "output.dense.",
                    "ln2.": "output.LayerNorm."}[rest.rsplit(".", 1)[0] + "."] + rest.rsplit(".", 1)[1]
            k = f"encoder.layer.{i}.{rest}"
        out[k] = v
    out["embeddings.position_ids"] = torch.arange(8)[None]
    return out


def test_caption_cache_round_trip(encoder, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSEKIT_CACHE", str(tmp_path))
    captions = ["a red circle", "the digit 7", "a red circle", "", "the digit 7"]
    first = encode_captions(captions, encoder)
    assert not first.from_cache and first.path.parent == tmp_path / "text" and first.path.suffix == ".safetensors"
    assert first.captions == ["", "a red circle", "the digit 7"] and first.index.tolist() == [1, 2, 1, 0, 2]
    with safe_open(str(first.path), framework="pt") as f:  # a plain safetensors file, captions in its metadata
        assert set(f.keys()) == {"tokens", "mask", "embeddings"}
        assert json.loads(f.metadata()["captions"]) == first.captions

    def no_encoder(*a, **k):
        raise AssertionError("the encoder must not be loaded on a cache hit")

    monkeypatch.setattr(text_cache.TextEncoder, "load", no_encoder)
    again = encode_captions(list(reversed(captions)))  # same distinct captions: same file, new index
    assert again.from_cache and again.path == first.path
    assert torch.equal(again.tokens, first.tokens) and torch.equal(again.mask, first.mask)
    tokens, mask = again.lookup([0, 3])  # images 0 and 3 of the reversed list: both "the digit 7"
    assert tokens.shape == (2, first.tokens.shape[1], 384) and torch.equal(tokens[0], tokens[1])
    assert torch.allclose(again.embeddings[again.index], encoder.embed(list(reversed(captions))), atol=1e-6)

    first.path.write_bytes(b"not a safetensors file")  # a damaged file is a miss, recomputed and replaced
    redone = encode_captions(captions, encoder)
    assert not redone.from_cache and torch.equal(redone.tokens, first.tokens)
    assert encode_captions(captions, encoder).from_cache
    other = encode_captions(["a blue square"], encoder)
    assert other.path != first.path and len(list((tmp_path / "text").glob("*.safetensors"))) == 2
    with pytest.raises(ValueError, match="max_length"):
        encode_captions(captions, encoder, max_length=77)
