"""TinyVideoDiT: each condition path, patchify order, per-sample independence, errors."""

import math

import pytest
import torch

from infralens.diffusion import guided_prediction
from infralens.nets import TinyVideoDiT, timestep_features


def inputs(b=2, c=16, f=3, h=4, w=6, d_text=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, c, f, h, w, generator=g),
        torch.tensor([900.0, 100.0][:b]),
        torch.randn(b, 5, d_text, generator=g),
    )


def test_shape_contract_and_determinism():
    z, t, text = inputs()
    a, b = TinyVideoDiT(), TinyVideoDiT()
    with torch.no_grad():
        assert a(z, t, text).shape == z.shape
        assert torch.equal(a(z, t, text), b(z, t, text))  # the seed fixes the weights
        assert not torch.equal(a(z, t, text), TinyVideoDiT(seed=1)(z, t, text))


def test_timestep_embedding_formula():
    t = torch.tensor([0.0, 10.0, 999.0])
    e = timestep_features(t, 8)
    for row, tv in zip(e, t.tolist(), strict=True):
        omega = [10000 ** (-i / 4) for i in range(4)]
        expected = [math.cos(tv * o) for o in omega] + [math.sin(tv * o) for o in omega]
        assert torch.allclose(row, torch.tensor(expected), atol=1e-5)


def test_unpatchify_inverts_row_major_patches():
    dit = TinyVideoDiT(latent_channels=3)
    B, C, F, H, W = 1, 3, 2, 4, 6
    x = torch.arange(B * C * F * H * W, dtype=torch.float32).reshape(B, C, F, H, W)
    f, h, w = F, H // 2, W // 2
    tokens = torch.zeros(B, f * h * w, C * 4)
    for fi in range(f):
        for i in range(h):
            for j in range(w):
                patch = x[0, :, fi, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]  # (C, 2, 2)
                tokens[0, (fi * h + i) * w + j] = patch.permute(1, 2, 0).flatten()  # features (ph, pw, C)
    assert torch.equal(dit.unpatchify(tokens, (f, h, w)), x)
    assert dit.patchify(torch.zeros(B, 3, F, H, W)).shape == (B, f * h * w, dit.dim)


def test_every_path_changes_the_prediction():
    dit = TinyVideoDiT(condition_channels=20, image_token_dim=12)
    z, t, text = inputs()
    y = torch.randn(2, 20, 3, 4, 6)
    img = torch.randn(2, 3, 12)
    with torch.no_grad():
        base = dit(z, t, text, condition=y, image_tokens=img)
        for changed in (
            dit(z, t * 0 + 500, text, condition=y, image_tokens=img),
            dit(z, t, torch.randn_like(text), condition=y, image_tokens=img),
            dit(z, t, text, condition=torch.randn_like(y), image_tokens=img),
            dit(z, t, text, condition=y, image_tokens=torch.randn_like(img)),  # (+1 would vanish in LayerNorm)
        ):
            assert not torch.allclose(base, changed, atol=1e-4)


def test_condition_is_concatenated_after_the_latent_channels():
    dit = TinyVideoDiT(condition_channels=4)
    z, t, text = inputs()
    y = torch.randn(2, 4, 3, 4, 6)
    seen = {}
    dit.patch_embedding.register_forward_hook(lambda m, a, o: seen.update(x=a[0]))
    with torch.no_grad():
        dit(z, t, text, condition=y)
    assert torch.equal(seen["x"], torch.cat([z, y], dim=1))


def test_image_tokens_get_their_own_keys_values_and_softmax():
    """Wan's decoupled image cross-attention: text and image are two softmaxes, added; never one joint softmax."""
    dit = TinyVideoDiT(image_token_dim=12)
    z, t, text = inputs()
    img = torch.randn(2, 3, 12)
    seen = {}
    attn = dit.blocks[0].attn2
    attn.register_forward_hook(lambda m, a, k, o: seen.update(q=a[0], kv=a[1], img=k["image_tokens"], out=o),
                               with_kwargs=True)  # fmt: skip
    with torch.no_grad():
        dit(z, t, text, image_tokens=img)
        assert seen["kv"].shape == (2, 5, dit.dim) and seen["img"].shape == (2, 3, dit.dim)
        assert torch.allclose(seen["kv"], dit.text_embedding(text), atol=1e-6)
        assert torch.allclose(seen["img"], dit.image_embedding(img), atol=1e-6)
        q, c, ci = seen["q"], seen["kv"], seen["img"]
        h, d = attn.heads, dit.dim // attn.heads

        def split(x):
            return x.view(2, -1, h, d).transpose(1, 2)

        def attend(k, v):
            query = attn.norm_q(attn.to_q(q))  # Wan's qk-norm on the queries
            return torch.softmax(split(query) @ split(k).transpose(-1, -2) / d**0.5, -1) @ split(v)

        text_k = attn.norm_k(attn.to_k(c))  # ... and on the text keys
        two = attend(text_k, attn.to_v(c)) + attend(attn.norm_added_k(attn.add_k_proj(ci)), attn.add_v_proj(ci))
        joint = attend(torch.cat([attn.norm_added_k(attn.add_k_proj(ci)), text_k], 1),
                       torch.cat([attn.add_v_proj(ci), attn.to_v(c)], 1))  # fmt: skip
        merge = lambda x: attn.to_out(x.transpose(1, 2).reshape(2, -1, dit.dim))  # noqa: E731
        assert torch.allclose(seen["out"], merge(two), atol=1e-5)
        assert not torch.allclose(seen["out"], merge(joint), atol=1e-3)
        # without the qk-norm the block would compute something else: the norms are not identities here
        plain = lambda k, v: torch.softmax(split(attn.to_q(q)) @ split(k).transpose(-1, -2) / d**0.5, -1) @ split(v)  # noqa: E731
        assert not torch.allclose(
            seen["out"],
            merge(
                plain(attn.to_k(c), attn.to_v(c)) + attend(attn.norm_added_k(attn.add_k_proj(ci)), attn.add_v_proj(ci))
            ),
            atol=1e-3,
        )


def test_timestep_modulates_through_six_vectors():
    dit = TinyVideoDiT()
    seen = {}
    dit.time_projection.register_forward_hook(lambda m, a, o: seen.update(t_mod=o))
    z, t, text = inputs()
    with torch.no_grad():
        dit(z, t, text)
    assert seen["t_mod"].shape == (2, 6, dit.dim)


def test_samples_do_not_mix_and_frames_are_equivariant():
    dit = TinyVideoDiT()
    z, t, text = inputs()
    with torch.no_grad():
        both = dit(z, t, text)
        assert torch.allclose(both[1:], dit(z[1:], t[1:], text[1:]), atol=1e-5)
        # no positional encoding: permuting latent frames permutes the prediction the same way
        perm = torch.tensor([2, 0, 1])
        assert torch.allclose(dit(z[:, :, perm], t, text), both[:, :, perm], atol=1e-5)


def test_scalar_timestep_and_guidance_compatibility():
    dit = TinyVideoDiT()
    z, _, text = inputs()
    with torch.no_grad():
        assert torch.allclose(dit(z, 500.0, text), dit(z, torch.tensor([500.0, 500.0]), text), atol=1e-6)
        out = guided_prediction(dit, z, torch.tensor([500.0, 500.0]), text, torch.zeros_like(text), 5.0)
    assert out.shape == z.shape


@pytest.mark.parametrize(
    ("kwargs", "call", "words"),
    [
        ({}, lambda d, z, t, x: d(z[:, :4], t, x), ["latents must be (B, 16, F, H, W)", "got (2, 4, 3, 4, 6)"]),
        ({}, lambda d, z, t, x: d(z[..., :3], t, x), ["must be even for (1, 2, 2) patches", "got (4, 3)"]),
        ({}, lambda d, z, t, x: d(z, t, x[..., :8]), ["text must be (B, L, 32) with B = 2", "got (2, 5, 8)"]),
        ({}, lambda d, z, t, x: d(z, t, x[:1]), ["text must be (B, L, 32) with B = 2", "got (1, 5, 32)"]),
        ({}, lambda d, z, t, x: d(z, torch.ones(3), x), ["timesteps must be one value or one per sample, shape (2,)"]),
        ({}, lambda d, z, t, x: d(z, t, x, condition=z), ["condition given, but condition_channels=0"]),
        ({}, lambda d, z, t, x: d(z, t, x, image_tokens=x), ["image_tokens given, but image_token_dim=0"]),
        (
            {"condition_channels": 20},
            lambda d, z, t, x: d(z, t, x),
            ["condition must be (B, C_y, F, H, W) = (2, 20, 3, 4, 6)", "got None"],
        ),
        (
            {"condition_channels": 20},
            lambda d, z, t, x: d(z, t, x, condition=torch.zeros(2, 20, 2, 4, 6)),
            ["(2, 20, 3, 4, 6)", "got (2, 20, 2, 4, 6)"],
        ),
        (
            {"image_token_dim": 12},
            lambda d, z, t, x: d(z, t, x, image_tokens=torch.zeros(2, 3, 10)),
            ["image_tokens must be (B, L_img, 12) with B = 2", "got (2, 3, 10)"],
        ),
    ],
)
def test_forward_errors(kwargs, call, words):
    z, t, text = inputs()
    with pytest.raises(ValueError) as err:
        call(TinyVideoDiT(**kwargs), z, t, text)
    assert all(w in str(err.value) for w in words), str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"latent_channels": 0}, ["latent_channels must be >= 1", "latent_channels=16"]),
        ({"dim": 30, "num_heads": 4}, ["num_heads must divide dim=30", "num_heads=2", "got 4"]),
        ({"condition_channels": -1}, ["condition_channels must be a whole number >= 0", "condition_channels=20"]),
        ({"image_token_dim": 1.5}, ["image_token_dim must be a whole number >= 0", "image_token_dim=1280"]),
        ({"num_layers": 0}, ["num_layers must be >= 1"]),
    ],
)
def test_constructor_errors(kwargs, words):
    with pytest.raises(ValueError) as err:
        TinyVideoDiT(**kwargs)
    assert all(w in str(err.value) for w in words), str(err.value)
