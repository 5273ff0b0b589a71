"""infralens.transformer's attention against transformers' Llama attention and repeat_kv, on the same weights.

Tiny one-layer configs built in code (``_tiny_llama.py``); float64 so that the
comparison is exact up to rounding. Both of transformers' attention paths run:
eager (explicit scores, an additive mask) and SDPA (``is_causal`` when there is
no padding). Eager takes its softmax in float32 whatever the input dtype
(``eager_attention_forward``), so it agrees to float32 rounding; SDPA to float64's.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from transformers.masking_utils import create_causal_mask  # noqa: E402
from transformers.models.llama import modeling_llama  # noqa: E402

from infralens.transformer import padded_causal_mask, repeat_kv, rope_angles  # noqa: E402

from ._tiny_llama import SHAPES, tiny_pair  # noqa: E402

pytestmark = [pytest.mark.upstream]
TOL = {"eager": 1e-6, "sdpa": 1e-12}


def exact_cos_sin(position_ids, head_dim):
    """cos and sin in float64, laid out as LlamaRotaryEmbedding lays them out (the angles twice, half layout).

    transformers computes the angles in float32 whatever the tensors' dtype
    (``LlamaRotaryEmbedding.forward``), so with its own RoPE module the outputs
    agree to float32 rounding (1e-7); with these they agree to float64 rounding.
    """
    theta = rope_angles(position_ids, head_dim, dtype=torch.float64)  # (B, S, Dh/2)
    emb = torch.cat([theta, theta], dim=-1)  # (B, S, Dh)
    return emb.cos(), emb.sin()


@pytest.mark.parametrize("n_rep", [1, 2, 4])
def test_repeat_kv_matches_transformers(n_rep):
    kv = torch.randn(2, 3, 5, 8)  # (B, H_kv, S, Dh)
    assert torch.equal(repeat_kv(kv, n_rep), modeling_llama.repeat_kv(kv, n_rep))


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_llama_attention_same_weights_same_output(shape, attn):
    """Same q/k/v/o weights, same RoPE: LlamaAttention's output equals ours (causal, no padding)."""
    ours, theirs, rope, cfg = tiny_pair(shape, attn=attn)
    x = torch.randn(2, 9, cfg.hidden_size, dtype=torch.float64)
    position_ids = torch.arange(9)[None]
    cos_sin = rope(x, position_ids)
    mask = create_causal_mask(
        config=cfg, inputs_embeds=x, attention_mask=None, past_key_values=None, position_ids=position_ids
    )
    if attn == "sdpa":
        assert mask is None  # no padding: transformers leaves causality to SDPA's is_causal
    with torch.no_grad():
        got = ours(x)
        exact, _ = theirs(x, position_embeddings=exact_cos_sin(position_ids, ours.head_dim), attention_mask=mask)
        assert torch.allclose(got, exact, atol=TOL[attn])
        expected, _ = theirs(x, position_embeddings=cos_sin, attention_mask=mask)  # float32 angles
        assert torch.allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_llama_attention_with_padding_same_output_on_real_tokens(attn):
    """Left padding: the mask hides pad keys; rows of real tokens agree, with transformers' own mask or ours."""
    ours, theirs, _, cfg = tiny_pair("gqa", attn=attn)
    x = torch.randn(2, 6, cfg.hidden_size, dtype=torch.float64)
    attention_mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # real tokens start at position 0
    mask = create_causal_mask(
        config=cfg, inputs_embeds=x, attention_mask=attention_mask, past_key_values=None, position_ids=position_ids
    )
    with torch.no_grad():
        cos_sin = exact_cos_sin(position_ids, ours.head_dim)
        expected, _ = theirs(x, position_embeddings=cos_sin, attention_mask=mask)
        got = ours(
            x, positions=position_ids, causal=False, mask=padded_causal_mask(attention_mask, dtype=torch.float64)
        )
    real = attention_mask.bool()
    assert torch.allclose(got[real], expected[real], atol=TOL[attn])


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_fully_masked_pad_rows_stay_finite(attn):
    """A left-padded row's pad queries see no key at all; transformers' output has no NaN there (float32).

    Eager adds a mask whose hidden entries are float32's most negative finite
    value, not -inf, so such a row's softmax is uniform instead of 0/0; SDPA
    gets a boolean mask and torch's kernel returns zeros for the row.
    """
    _, theirs, rope, cfg = tiny_pair("gqa", attn=attn, dtype=torch.float32)
    x = torch.randn(2, 6, cfg.hidden_size)
    attention_mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    mask = create_causal_mask(
        config=cfg, inputs_embeds=x, attention_mask=attention_mask, past_key_values=None, position_ids=position_ids
    )
    if attn == "eager":
        assert mask.dtype == torch.float32 and mask.min().item() == torch.finfo(torch.float32).min
        assert not torch.isinf(mask).any()
        assert (mask[0, 0, :2] != 0).all()  # the two pad queries: every key hidden
    else:
        assert mask.dtype == torch.bool and not mask[0, 0, :2].any()
    with torch.no_grad():
        out, _ = theirs(x, position_embeddings=rope(x, position_ids), attention_mask=mask)
        v = theirs.v_proj(x[:1])  # (1, S, H_kv * Dh): row 0's values, every key
    assert torch.isfinite(out).all()
    pad_rows = out[0, :2]  # (2, D): the two pad queries of the left-padded row
    if attn == "eager":
        # finfo.min swamps every score alike: a uniform average over all six keys, pad keys included
        _, heads, kv_heads, _ = SHAPES["gqa"]
        per_kv_head = v.mean(1).view(kv_heads, -1)  # (H_kv, Dh): each KV head's mean value
        per_head = per_kv_head.repeat_interleave(heads // kv_heads, 0)  # (H, Dh), as repeat_kv shares them
        uniform = theirs.o_proj(per_head.flatten())  # (D,)
        assert torch.allclose(pad_rows, uniform.expand(2, -1), atol=TOL[attn])
    else:
        assert torch.equal(pad_rows, torch.zeros_like(pad_rows))  # torch's SDPA: an empty row gives zeros


def test_llama_attention_scales_by_head_dim_not_width():
    """head_dim 16 with hidden 32 and 4 heads: transformers scales by 1/sqrt(16), as we do."""
    ours, theirs, _, cfg = tiny_pair("mqa-wide-heads")
    assert ours.q_proj.weight.shape == theirs.q_proj.weight.shape == (4 * 16, 32)
    x = torch.randn(1, 5, 32, dtype=torch.float64)
    ids = torch.arange(5)[None]
    mask = create_causal_mask(config=cfg, inputs_embeds=x, attention_mask=None, past_key_values=None, position_ids=ids)
    with torch.no_grad():
        expected, weights = theirs(x, position_embeddings=exact_cos_sin(ids, 16), attention_mask=mask)
        q, k, _ = ours.project(x)
        k = repeat_kv(k, 4)
        scores = q @ k.transpose(-2, -1) / 16**0.5 + mask  # (B, H, S, S)
    assert torch.allclose(weights, scores.softmax(-1), atol=TOL["eager"])  # eager returns its attention weights
    assert torch.allclose(ours(x), expected, atol=TOL["eager"])
