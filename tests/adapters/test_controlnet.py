"""ControlNet-style residuals: zero-initialised projections, conditioning_scale, several controls, errors."""

import re
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F  # noqa: N812 (the usual alias)

from infralens.adapters import ControlNetConditioningEmbedding, MultiControlNet, TinyControlNet
from infralens.nets import TinyUNet

ROOT = Path(__file__).resolve().parents[2]
STARTER = ROOT / "code/diffuser/lab-09-controlnet-conditioning-reading/controlnet_flow.py"


def trained(net: TinyControlNet, seed: int) -> TinyControlNet:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.zero_modules():
            for p in module.parameters():
                p.normal_(std=0.1, generator=g)
    return net


@pytest.fixture
def setup():
    unet = TinyUNet(in_channels=4, width=8, num_blocks=2).requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    x, image = torch.randn(2, 4, 8, 8, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    return unet, x, torch.tensor([900, 100]), image


def test_seeded_weights_leave_the_global_generator_alone():
    state = torch.random.get_rng_state()
    a, b = TinyUNet(seed=3), TinyUNet(seed=3)
    c = TinyControlNet(seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert c.conditioning_factor == 8


@pytest.mark.parametrize(("num_blocks", "H", "W"), [(1, 6, 10), (2, 16, 8), (3, 8, 24)])
def test_unet_shapes(num_blocks, H, W):
    unet = TinyUNet(in_channels=3, width=4, num_blocks=num_blocks)
    x = torch.randn(2, 3, H, W)
    assert unet(x, torch.tensor(10)).shape == x.shape
    skips, mid = unet.encoder(x, torch.tensor([1, 2]))
    assert [tuple(s.shape) for s in skips] == unet.skip_shapes(batch=2, height=H, width=W)
    assert tuple(mid.shape) == unet.mid_shape(batch=2, height=H, width=W) == (2, 4, H >> num_blocks, W >> num_blocks)


def test_from_denoiser_copies_the_encoder(setup):
    unet = setup[0]
    net = TinyControlNet.from_denoiser(unet)
    for p, q in zip(net.encoder.parameters(), unet.encoder.parameters(), strict=True):
        assert torch.equal(p, q) and p.data_ptr() != q.data_ptr()
    assert all(p.requires_grad for p in net.parameters())
    assert not any(p.requires_grad for p in unet.parameters())


def test_zero_modules_are_exactly_the_zero_initialised_ones():
    net = TinyControlNet.from_denoiser(TinyUNet())
    zero = {id(p) for m in net.zero_modules() for p in m.parameters()}
    for name, p in net.named_parameters():
        assert (torch.count_nonzero(p) == 0) == (id(p) in zero), name
    assert len(net.zero_modules()) == 1 + (net.num_blocks + 1) + 1


def test_fresh_control_is_an_exact_no_op(setup):
    unet, x, t, image = setup
    net = TinyControlNet.from_denoiser(unet)
    down, mid = net(x, t, image, conditioning_scale=3.0)
    assert all(torch.count_nonzero(r) == 0 for r in [*down, mid])
    assert torch.equal(unet(x, t, down, mid), unet(x, t))
    # the encoded control image is zero too, so the copy computes exactly the denoiser's features
    skips, feat_mid = net.encoder(x, t, added=net.controlnet_cond_embedding(image))
    ref_skips, ref_mid = unet.encoder(x, t)
    assert torch.equal(feat_mid, ref_mid) and all(map(torch.equal, skips, ref_skips))


def test_at_initialisation_only_the_zero_convs_get_gradients(setup):
    unet, x, t, image = setup
    net = TinyControlNet.from_denoiser(unet)
    down, mid = net(x, t, image)
    unet(x, t, down, mid).pow(2).sum().backward()
    for name, p in net.named_parameters():
        moving = name.startswith(("controlnet_down_blocks", "controlnet_mid_block"))
        assert (torch.count_nonzero(p.grad) > 0) == moving, name
    assert all(p.grad is None for p in unet.parameters())


def test_residuals_are_scaled_zero_convs_of_the_copy(setup):
    unet, x, t, image = setup
    net = trained(TinyControlNet.from_denoiser(unet), seed=1)
    skips, feat_mid = net.encoder(x, t, added=net.controlnet_cond_embedding(image))
    for scale in (0.0, 0.3, 1.0, 2.5):
        down, mid = net(x, t, image, conditioning_scale=scale)
        for h, r, conv in zip(skips, down, net.controlnet_down_blocks, strict=True):
            manual = scale * (torch.einsum("oi,bihw->bohw", conv.weight[:, :, 0, 0], h) + conv.bias[:, None, None])
            assert torch.allclose(r, manual, atol=1e-6)
        z = net.controlnet_mid_block
        assert torch.allclose(mid, scale * F.conv2d(feat_mid, z.weight, z.bias), atol=1e-6)


def test_unet_adds_residuals_to_its_skips_and_mid(setup):
    unet, x, t, image = setup
    net = trained(TinyControlNet.from_denoiser(unet), seed=1)
    down, mid = net(x, t, image)
    skips, h = unet.encoder(x, t)
    skips = [s + r for s, r in zip(skips, down, strict=True)]
    h = h + mid
    for k in range(unet.num_blocks, 0, -1):  # the decoder, written out
        h = F.interpolate(F.silu(unet.up_blocks[k - 1](h + skips[k])), scale_factor=2.0)
    manual = unet.conv_out(h + skips[0])
    assert torch.allclose(unet(x, t, down, mid), manual, atol=1e-6)
    assert not torch.allclose(manual, unet(x, t), atol=1e-3)  # a trained control changes the output


def test_a_trained_control_depends_on_its_image(setup):
    unet, x, t, image = setup
    net = trained(TinyControlNet.from_denoiser(unet), seed=1)
    a, _ = net(x, t, image)
    b, _ = net(x, t, torch.zeros_like(image))
    assert not torch.allclose(a[0], b[0], atol=1e-4)


def test_multi_control_sums_scaled_residuals(setup):
    unet, x, t, image = setup
    nets = [trained(TinyControlNet.from_denoiser(unet, seed=s), seed=10 + s) for s in range(3)]
    images = [image, image.flip(-1), torch.zeros_like(image)]
    scales = [1.0, 0.5, 2.0]
    down, mid = MultiControlNet(nets)(x, t, images, scales)
    singles = [net(x, t, im, conditioning_scale=s) for net, im, s in zip(nets, images, scales, strict=True)]
    for k, r in enumerate(down):
        assert torch.allclose(r, sum(d[k] for d, _ in singles), atol=1e-6)
    assert torch.allclose(mid, sum(m for _, m in singles), atol=1e-6)
    unit = [net(x, t, im)[1] for net, im in zip(nets, images, strict=True)]
    assert torch.allclose(mid, sum(s * m for s, m in zip(scales, unit, strict=True)), atol=1e-5)


def test_conditioning_embedding_reaches_the_latent_grid():
    emb = ControlNetConditioningEmbedding(conditioning_channels=1, width=4, factor=4)
    assert emb(torch.randn(2, 1, 40, 24)).shape == (2, 4, 10, 6)
    assert len(emb.blocks) == 2


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: TinyUNet(width=0), "width must be >= 1, e.g. width=8; got 0"),
        (lambda: TinyUNet(num_blocks=1.5), "num_blocks must be a whole number >= 1, e.g. num_blocks=2; got 1.5"),
        (lambda: TinyControlNet(conditioning_channels=0), "conditioning_channels must be >= 1"),
        (
            lambda: TinyControlNet(conditioning_factor=6),
            "conditioning_factor must be a power of 2 (stride-2 convolutions reach it), e.g. conditioning_factor=8; "
            "got 6",
        ),
        (
            lambda: TinyControlNet.from_denoiser(torch.nn.Conv2d(4, 4, 1)),
            "denoiser must be a TinyUNet, e.g. TinyControlNet.from_denoiser(TinyUNet()); got Conv2d",
        ),
        (
            lambda: MultiControlNet([]),
            "nets must be a non-empty list of TinyControlNet, e.g. MultiControlNet([canny, depth]); got []",
        ),
        (
            lambda: MultiControlNet([TinyControlNet(), TinyUNet()]),
            "nets must be a non-empty list of TinyControlNet, e.g. MultiControlNet([canny, depth]); "
            "got ['TinyControlNet', 'TinyUNet']",
        ),
        (
            lambda: MultiControlNet(TinyControlNet()),
            "nets must be a non-empty list of TinyControlNet, e.g. MultiControlNet([canny, depth]); got TinyControlNet",
        ),
    ],
)
def test_constructor_errors(build, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build()


@pytest.mark.parametrize(
    ("sample", "timestep", "message"),
    [
        (
            torch.randn(1, 3, 16, 16),
            torch.tensor(1),
            "sample must be a latent (B, 4, H, W), e.g. torch.randn(1, 4, 16, 16); got (1, 3, 16, 16)",
        ),
        (
            torch.randn(4, 16, 16),
            torch.tensor(1),
            "sample must be a latent (B, 4, H, W), e.g. torch.randn(1, 4, 16, 16); got (4, 16, 16)",
        ),
        ("latent", torch.tensor(1), "sample must be a latent (B, 4, H, W), e.g. torch.randn(1, 4, 16, 16); got str"),
        (
            torch.randn(1, 4, 18, 16),
            torch.tensor(1),
            "latent height must be a positive multiple of 2**num_blocks = 4 (each block halves it); "
            "got 18, nearest valid: 16 or 20",
        ),
        (
            torch.randn(1, 4, 16, 2),
            torch.tensor(1),
            "latent width must be a positive multiple of 2**num_blocks = 4 (each block halves it); "
            "got 2, nearest valid: 4",
        ),
        (
            torch.randn(2, 4, 16, 16),
            torch.tensor([1, 2, 3]),
            "timestep must be a tensor of shape () or (B,) = (2,), e.g. torch.tensor(500); got (3,)",
        ),
        (
            torch.randn(2, 4, 16, 16),
            500,
            "timestep must be a tensor of shape () or (B,) = (2,), e.g. torch.tensor(500); got int",
        ),
    ],
)
def test_latent_errors(sample, timestep, message):
    unet = TinyUNet()
    net = TinyControlNet.from_denoiser(unet)
    with pytest.raises(ValueError, match=re.escape(message) + "$"):
        unet(sample, timestep)
    if isinstance(sample, torch.Tensor) and sample.ndim == 4:
        image = torch.zeros(sample.shape[0], 3, 8 * sample.shape[2], 8 * sample.shape[3])
        with pytest.raises(ValueError, match=re.escape(message) + "$"):
            net(sample, timestep, image)


def test_skip_shapes_error():
    with pytest.raises(ValueError, match=re.escape("latent height must be a positive multiple of 2**num_blocks = 4")):
        TinyUNet().skip_shapes(batch=1, height=6, width=8)


def test_residual_errors(setup):
    unet, x, t, image = setup
    down, mid = TinyControlNet.from_denoiser(unet)(x, t, image)
    with pytest.raises(
        ValueError, match=re.escape("give both down_block_additional_residuals and mid_block_additional_residual")
    ):
        unet(x, t, down, None)
    with pytest.raises(ValueError, match=re.escape("give both down_block_additional_residuals")):
        unet(x, t, None, mid)
    message = (
        "down_block_additional_residuals must have the skip shapes [(2, 8, 8, 8), (2, 8, 4, 4), (2, 8, 2, 2)] and "
        "mid_block_additional_residual the shape (2, 8, 2, 2); got [(2, 8, 8, 8), (2, 8, 4, 4)] and (2, 8, 2, 2)"
    )
    with pytest.raises(ValueError, match=re.escape(message) + "$"):
        unet(x, t, down[:2], mid)
    with pytest.raises(ValueError, match=re.escape("got [(2, 8, 8, 8), (2, 8, 4, 4), (2, 8, 2, 2)] and (2, 8, 1, 1)")):
        unet(x, t, down, mid[..., :1, :1])


@pytest.mark.parametrize(
    ("image", "scale", "message"),
    [
        (
            torch.zeros(2, 3, 32, 32),
            1.0,
            "controlnet_cond must be the control image in pixels, (B, 3, 8*H, 8*W) = (2, 3, 64, 64) for a "
            "latent of (2, 4, 8, 8); got (2, 3, 32, 32)",
        ),
        (torch.zeros(2, 1, 64, 64), 1.0, "got (2, 1, 64, 64)"),
        (None, 1.0, "; got not a tensor"),
        (
            torch.zeros(2, 3, 64, 64),
            float("nan"),
            "conditioning_scale must be a finite number, e.g. conditioning_scale=1.0; got nan",
        ),
        (
            torch.zeros(2, 3, 64, 64),
            True,
            "conditioning_scale must be a finite number, e.g. conditioning_scale=1.0; got True",
        ),
    ],
)
def test_controlnet_input_errors(setup, image, scale, message):
    unet, x, t, _ = setup
    with pytest.raises(ValueError, match=re.escape(message) + "$"):
        TinyControlNet.from_denoiser(unet)(x, t, image, conditioning_scale=scale)


def test_multi_control_length_errors(setup):
    unet, x, t, image = setup
    multi = MultiControlNet([TinyControlNet.from_denoiser(unet), TinyControlNet.from_denoiser(unet)])
    with pytest.raises(
        ValueError,
        match=re.escape("controlnet_cond must be a list with one entry per net (2), in the nets' order; got 1 items"),
    ):
        multi(x, t, [image], [1.0, 1.0])
    with pytest.raises(
        ValueError,
        match=re.escape("conditioning_scale must be a list with one entry per net (2), in the nets' order; got float"),
    ):
        multi(x, t, [image, image], 1.0)


def test_starter_prints_checked_values(starter):
    out = starter(STARTER)
    shapes = {
        "latents": (1, 4, 16, 16),
        "image": (1, 3, 128, 128),
        "cond": (1, 8, 16, 16),
        "down[0]": (1, 8, 16, 16),
        "down[1]": (1, 8, 8, 8),
        "down[2]": (1, 8, 4, 4),
        "mid": (1, 8, 4, 4),
    }
    for name, shape in shapes.items():
        assert re.search(rf"^\s+{re.escape(name)}\s+{re.escape(str(shape))}\s", out, re.M), name
    assert "fresh ControlNet: output == plain denoiser: True" in out
    w = 8  # zero modules: a 3x3 conv w -> w, three 1x1 down convs and one 1x1 mid conv, with biases
    assert f"zero-initialised parameters: {9 * w * w + w + 4 * (w * w + w):,}" in out
    rows = re.findall(r"^\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", out, re.M)
    assert [float(r[0]) for r in rows] == [0.0, 0.5, 1.0, 2.0]
    unit = float(rows[2][1])
    for scale, r_max, _ in rows:
        assert float(r_max) == pytest.approx(float(scale) * unit, abs=2e-6)  # residuals scale exactly
    assert float(rows[0][2]) == 0.0 and float(rows[1][2]) > 0
    assert "two controls, scales [1.0, 0.5]: residuals summed: True" in out
    counts = dict(re.findall(r"^\s+(.+?)\s{2,}([\d,]+)$", out.split("Parameters", 1)[1], re.M))
    counts = {k.strip(): int(v.replace(",", "")) for k, v in counts.items()}
    assert counts["of which its encoder"] == counts["encoder copy"]
    parts = counts["encoder copy"] + counts["control embedding"] + counts["zero 1x1 convs"]
    assert counts["ControlNet (trainable)"] == parts
    assert counts["zero 1x1 convs"] == 4 * (w * w + w)
