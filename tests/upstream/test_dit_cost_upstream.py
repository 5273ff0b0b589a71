"""How a DiT's cost grows with resolution: FLOPs of one SD3 block, counted by PyTorch (diffusers 0.42.1).

A one-layer ``SD3Transformer2DModel`` at SD3-medium width (24 heads of 64, joint attention with 333 text
tokens) on the meta device, so no weights are allocated; ``FlopCounterMode`` counts every matmul. Only the
attention products grow with the square of the token count; the projections and MLPs grow linearly.
"""

from __future__ import annotations

import pytest

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

pytestmark = [
    pytest.mark.upstream,
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


def sd3_block_flops(pixels: int) -> tuple[int, int]:
    """(total FLOPs, FLOPs of the attention products) of one SD3-medium-width block on a square image."""
    with torch.device("meta"):
        model = diffusers.SD3Transformer2DModel(
            sample_size=256,
            patch_size=2,
            in_channels=16,
            num_layers=1,
            attention_head_dim=64,
            num_attention_heads=24,
            joint_attention_dim=4096,
            caption_projection_dim=1536,
            pooled_projection_dim=2048,
            out_channels=16,
            pos_embed_max_size=192,
        )
        side = pixels // 8
        inputs = dict(
            hidden_states=torch.randn(1, 16, side, side),
            encoder_hidden_states=torch.randn(1, 333, 4096),
            pooled_projections=torch.randn(1, 2048),
            timestep=torch.tensor([500.0]),
        )
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(**inputs)
    by_op = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    attention = sum(v for k, v in by_op.items() if "attention" in k or "bmm" in k)
    return counter.get_total_flops(), attention


def test_attention_share_grows_and_the_cost_grows_less_than_the_square_of_the_area():
    """512², 1024², 2048²: attention is about 14%, 33%, 65% of the block's FLOPs; four times the area costs
    about 4.6 then 7.3 times more, not 16."""
    results = {px: sd3_block_flops(px) for px in (512, 1024, 2048)}
    shares = {px: attn / total for px, (total, attn) in results.items()}
    assert 0.12 < shares[512] < 0.16 and 0.31 < shares[1024] < 0.35 and 0.63 < shares[2048] < 0.67
    growth = [results[b][0] / results[a][0] for a, b in ((512, 1024), (1024, 2048))]
    assert 4.4 < growth[0] < 4.8 and 7.1 < growth[1] < 7.5
