"""Cross-check one reverse step against diffusers' ``DDPMScheduler.step`` and ``DDIMScheduler.step``.

Random tensors, default configs apart from the setting under test, the same noise on both sides
(diffusers draws it with ``torch.randn`` from the generator it is given, so the same seed gives the
same ``z``). Also asserts that the diffusers source lines Lab 02 cites still say what the page says.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

from diffusers import DDIMScheduler, DDPMScheduler  # noqa: E402

from infralens.diffusion import PREDICTION_TYPES, ddim_step, ddpm_step  # noqa: E402

pytestmark = [pytest.mark.upstream, pytest.mark.filterwarnings("ignore::FutureWarning")]

SHAPE = (2, 4, 8, 8)


def tensors(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g)


def close(ours, theirs):
    # diffusers forms its coefficients in float32 tensors, we in float64: float32 rounding apart
    scale = 1 + theirs.abs().max()
    assert (ours - theirs).abs().max() <= 1e-5 * scale


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_ddpm_step_over_a_50_step_schedule(prediction_type, clip):
    sched = DDPMScheduler(prediction_type=prediction_type, clip_sample=clip)
    sched.set_timesteps(50)
    x, model_output = tensors(0)
    for i, t in enumerate(sched.timesteps.tolist()):
        prev_t = int(sched.previous_timestep(t))
        ab = sched.alphas_cumprod[t]
        ab_prev = sched.alphas_cumprod[prev_t] if prev_t >= 0 else 1.0
        theirs = sched.step(model_output, t, x, generator=torch.Generator().manual_seed(i))
        z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(i))
        ours = ddpm_step(
            x, model_output, ab, ab_prev, prediction_type=prediction_type, noise=z, clip_sample=1.0 if clip else None
        )
        close(ours.pred_original_sample, theirs.pred_original_sample)
        close(ours.prev_sample, theirs.prev_sample)


def float64_copy(sched):
    """The same scheduler computing in float64: an independent reference for both implementations."""
    sched.alphas_cumprod = sched.alphas_cumprod.double()
    sched.one = torch.tensor(1.0, dtype=torch.float64)
    return sched


def test_ddpm_step_over_the_full_1000_step_chain():
    """Without set_timesteps the previous timestep is t - 1, and t = 0 adds no noise.

    Near t = 0 the one-step beta is 1 - alpha_bar_t / alpha_bar_prev, a difference of two numbers close
    to 1: diffusers forms it (and 1 - alpha_bar_t) in float32 and loses digits there, we in float64.
    Both are compared with diffusers' own step run in float64.
    """
    sched, ref = DDPMScheduler(clip_sample=False), float64_copy(DDPMScheduler(clip_sample=False))
    x, model_output = tensors(1)
    for t in (999, 500, 10, 1, 0):
        ab = sched.alphas_cumprod[t]
        ab_prev = sched.alphas_cumprod[t - 1] if t > 0 else 1.0
        # diffusers draws its noise in the dtype of the model output: the same seed, drawn in float64
        exact = ref.step(model_output.double(), t, x.double(), generator=torch.Generator().manual_seed(t))
        z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(t), dtype=torch.float64)
        ours = ddpm_step(x, model_output, ab, ab_prev, noise=z.float()).prev_sample
        assert (ours.double() - exact.prev_sample).abs().max() <= 2e-6 * (1 + exact.prev_sample.abs().max())
    # diffusers in float32 at t = 1 against ours in float64 (itself checked against diffusers in float64 above):
    # off by more than 1e-5 of the latent, while ours in float32 stays within 1e-6
    z32 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    theirs1 = sched.step(model_output, 1, x, generator=torch.Generator().manual_seed(1)).prev_sample
    ours1 = ddpm_step(x, model_output, sched.alphas_cumprod[1], sched.alphas_cumprod[0], noise=z32).prev_sample
    ab1, ab0 = ref.alphas_cumprod[1], ref.alphas_cumprod[0]
    ref1 = ddpm_step(x.double(), model_output.double(), ab1, ab0, noise=z32.double()).prev_sample
    assert (ours1.double() - ref1).abs().max() < 1e-6 < 1e-5 < (theirs1.double() - ref1).abs().max() < 1e-3
    assert torch.equal(
        sched.step(model_output, 0, x, generator=torch.Generator().manual_seed(0)).prev_sample,
        sched.step(model_output, 0, x, generator=torch.Generator().manual_seed(1)).prev_sample,
    )  # the last step is deterministic: our ddpm_step(..., alpha_bar_prev=1.0) needs no noise either


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_ddim_step_over_a_50_step_schedule(prediction_type, clip, eta):
    sched = DDIMScheduler(prediction_type=prediction_type, clip_sample=clip)
    sched.set_timesteps(50)
    x, model_output = tensors(2)
    for i, t in enumerate(sched.timesteps.tolist()):
        prev_t = t - 1000 // 50  # DDIMScheduler.step's rule, whatever the spacing
        ab = sched.alphas_cumprod[t]
        ab_prev = sched.alphas_cumprod[prev_t] if prev_t >= 0 else sched.final_alpha_cumprod
        z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(i))
        theirs = sched.step(model_output, t, x, eta=eta, variance_noise=z if eta > 0 else None)
        ours = ddim_step(
            x,
            model_output,
            ab,
            ab_prev,
            prediction_type=prediction_type,
            eta=eta,
            noise=z,
            clip_sample=1.0 if clip else None,
        )
        close(ours.pred_original_sample, theirs.pred_original_sample)
        close(ours.prev_sample, theirs.prev_sample)


def test_defaults_the_page_states():
    for cls in (DDPMScheduler, DDIMScheduler):
        config = cls().config
        assert config.prediction_type == "epsilon"
        assert config.clip_sample is True and config.clip_sample_range == 1.0
        assert config.timestep_spacing == "leading" and config.steps_offset == 0
    assert DDPMScheduler().config.variance_type == "fixed_small"
    ddim = DDIMScheduler()
    assert ddim.config.set_alpha_to_one is True and ddim.final_alpha_cumprod.item() == 1.0


def diffusers_file(relative: str) -> list[str]:
    root = Path(importlib.util.find_spec("diffusers").origin).parent
    return (root / relative).read_text().splitlines()


# Lines cited (with a link) on the Lab 02 page: (file, line number in diffusers 0.42.1, text the line holds).
CITED = [
    ("schedulers/scheduling_ddpm.py", 202, "clip_sample: bool = True"),
    ("schedulers/scheduling_ddim.py", 201, "clip_sample: bool = True"),
    ("schedulers/scheduling_ddpm.py", 543, "if t > 0:"),
    (
        "schedulers/scheduling_ddim.py",
        445,
        "prev_timestep = timestep - self.config.num_train_timesteps // self.num_inference_steps",
    ),
]


@pytest.mark.parametrize(("relative", "line", "text"), CITED, ids=lambda v: str(v))
def test_cited_source_lines(relative, line, text):
    if diffusers.__version__ != "0.42.1":
        pytest.skip(f"line numbers are those of diffusers 0.42.1, not {diffusers.__version__}")
    assert text in diffusers_file(relative)[line - 1]
