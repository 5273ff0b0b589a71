"""infralens.transformer's masks against transformers' mask creation (``masking_utils.create_causal_mask``).

Eager attention gets an additive float mask; SDPA gets a boolean one, or none
at all when ``is_causal`` can do the job (no padding, or a single query).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from transformers.cache_utils import DynamicCache  # noqa: E402
from transformers.masking_utils import create_causal_mask  # noqa: E402

from infralens.transformer import causal_mask, padded_causal_mask  # noqa: E402

from ._tiny_llama import tiny_config, tiny_pair  # noqa: E402

pytestmark = [pytest.mark.upstream]


def transformers_mask(cfg, *, q_len, attention_mask=None, cache=None, dtype=torch.float32):
    x = torch.zeros(attention_mask.shape[0] if attention_mask is not None else 1, q_len, cfg.hidden_size, dtype=dtype)
    past = cache.get_seq_length() if cache is not None else 0
    ids = torch.arange(past, past + q_len)[None]
    return create_causal_mask(
        config=cfg, inputs_embeds=x, attention_mask=attention_mask, past_key_values=cache, position_ids=ids
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_eager_causal_mask_is_ours(dtype):
    m = transformers_mask(tiny_config(attn="eager"), q_len=6, dtype=dtype)
    assert m.shape == (1, 1, 6, 6) and m.dtype == dtype
    assert torch.equal(m[0, 0], causal_mask(6, dtype=dtype))


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_padding_combined_with_causal_is_ours(attn):
    attention_mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0]])  # left- and right-padded
    m = transformers_mask(tiny_config(attn=attn), q_len=5, attention_mask=attention_mask)
    ours = padded_causal_mask(attention_mask)
    if attn == "eager":
        assert torch.equal(m, ours)
    else:
        assert m.dtype == torch.bool and torch.equal(m, ours == 0)


def test_sdpa_without_padding_gets_no_mask_and_uses_is_causal():
    assert transformers_mask(tiny_config(attn="sdpa"), q_len=6) is None


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_decode_step_sees_every_cached_key(attn):
    """Prefill 4 tokens into a real DynamicCache, then one query: its mask row is all visible (or absent).

    The decode step's output equals the last row of a full causal pass over all
    5 tokens, so SDPA was not run with its top-left ``is_causal`` (which would
    let the one query see only the first key).
    """
    ours, theirs, rope, cfg = tiny_pair("gqa", attn=attn, dtype=torch.float32)
    cache = DynamicCache(config=cfg)
    x = torch.randn(1, 5, cfg.hidden_size)
    ids = torch.arange(5)[None]
    with torch.no_grad():
        theirs(x[:, :4], position_embeddings=rope(x, ids[:, :4]), attention_mask=None, past_key_values=cache)
        assert cache.get_seq_length() == 4
        m = transformers_mask(cfg, q_len=1, cache=cache)
        step, _ = theirs(x[:, 4:], position_embeddings=rope(x, ids[:, 4:]), attention_mask=m, past_key_values=cache)
        full = ours(x)  # (B, S, D), causal
    if attn == "eager":
        assert m.shape == (1, 1, 1, 5) and torch.equal(m[0, 0], causal_mask(1, 5))
        assert causal_mask(1, 5).eq(0).all()
    else:
        assert m is None  # one query: no triangle needed, SDPA runs without a mask
    assert torch.allclose(step, full[:, 4:], atol=1e-5)
