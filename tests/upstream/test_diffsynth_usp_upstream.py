"""DiffSynth-Studio's unified sequence parallel (USP) for Wan, run where it can be run here.

DiffSynth-Studio's sequence parallel path (``use_usp=True``) lives in
``diffsynth/utils/xfuser/xdit_context_parallel.py`` and delegates attention to
xDiT (``xfuser``, built on ``yunchang``). Neither is installed in this book's
environments, so xDiT's attention itself is not run. What is run: the import
that fails without them; DiffSynth's own splitting helpers (``get_current_chunk``,
``pad_freqs``, ``rope_apply``), with xDiT's rank getters replaced by plain functions;
and a whole guided ``WanVideoPipeline`` call after ``enable_usp`` on two gloo
processes (``_diffsynth_usp_ranks.py``), xDiT stood in by an exact attention over
every key it is handed, against the same call in one process.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch

from infralens.distributed import padded_length, run_ranks, split_sequence

from ._diffsynth import import_submodule
from ._diffsynth_usp_ranks import xdit_stubs

pytestmark = pytest.mark.upstream

MODULE = "utils.xfuser.xdit_context_parallel"


def _drop_module():
    for name in [m for m in sys.modules if m.startswith("diffsynth.utils")]:
        del sys.modules[name]


def test_usp_module_needs_xdit_packages():
    if importlib.util.find_spec("yunchang") or importlib.util.find_spec("xfuser"):
        pytest.fail("xDiT is installed here: run DiffSynth's USP attention for real and update Lab 12")
    _drop_module()
    with pytest.raises(ModuleNotFoundError) as err:
        import_submodule(MODULE)
    _drop_module()
    assert err.value.name in {"yunchang", "xfuser"}


@pytest.fixture
def usp(monkeypatch):
    """The USP module, imported with stand-ins for xDiT; ``usp.world`` sets the rank and world size."""
    world = {"rank": 0, "size": 2}
    stubs = xdit_stubs(lambda: world["rank"], lambda: world["size"], lambda: None, object)
    for name, module in stubs.items():
        monkeypatch.setitem(sys.modules, name, module)
    _drop_module()
    import_submodule("core.device")  # the package-level flag the module reads
    monkeypatch.setattr(sys.modules["diffsynth"], "IS_NPU_AVAILABLE", False, raising=False)
    module = import_submodule(MODULE)
    module.world = world
    yield module
    _drop_module()


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_get_current_chunk_zero_pads_the_last_rank_like_split_sequence(usp, world_size):
    x = torch.randn(1, 45, 8)  # (B, S, D): 45 tokens, as in Lab 12
    usp.world["size"] = world_size
    for rank in range(world_size):
        usp.world["rank"] = rank
        chunk = usp.get_current_chunk(x, dim=1)
        assert torch.equal(chunk, split_sequence(x, rank, world_size, dim=1))
    assert usp.is_evenly_divisible(45) is (45 % world_size == 0)


def test_pad_freqs_pads_rope_with_the_identity_rotation(usp):
    freqs = torch.polar(torch.ones(45, 1, 4), torch.randn(45, 1, 4))  # (S, 1, Dh/2) complex
    padded = usp.pad_freqs(freqs, 46)
    assert padded.shape == (46, 1, 4)
    assert torch.equal(padded[:45], freqs)
    assert torch.equal(padded[45:], torch.ones(1, 1, 4, dtype=freqs.dtype))  # 1 + 0j: no rotation


def test_rope_apply_rotates_each_rank_by_global_positions(usp):
    H, Dh, S, n = 2, 8, 45, 2
    s = -(-S // n)  # 23 tokens per rank
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, n * s, H * Dh, generator=g, dtype=torch.float64)  # (B, N s, H Dh), padded
    freqs = torch.polar(torch.ones(S, 1, Dh // 2), torch.randn(S, 1, Dh // 2, generator=g)).to(torch.complex128)
    # the referent: every token rotated by its own position, one process (padding: no rotation)
    whole = torch.view_as_complex(x.view(1, n * s, H, Dh // 2, 2)) * usp.pad_freqs(freqs, n * s)
    whole = torch.view_as_real(whole).flatten(2)  # (B, N s, H Dh)
    usp.world["size"] = n
    for rank in range(n):
        usp.world["rank"] = rank
        mine = usp.rope_apply(x[:, rank * s : (rank + 1) * s], freqs, H)
        assert torch.allclose(mine, whole[:, rank * s : (rank + 1) * s], atol=1e-12)
    local = torch.view_as_complex(x[:, s:].reshape(1, s, H, Dh // 2, 2)) * freqs[:s]  # positions from 0: wrong
    assert not torch.allclose(torch.view_as_real(local).flatten(2), whole[:, s:])


# --- the whole USP call on two gloo ranks ------------------------------------------------------------------

RANKS = Path(__file__).resolve().parent / "_diffsynth_usp_ranks.py"
SIZES = [(48, 80, 5), (48, 80, 9)]  # (height, width, frames): 2 x 3 x 5 = 30 tokens, 3 x 3 x 5 = 45 tokens
STEPS = 2  # num_inference_steps in every call


@pytest.fixture(scope="module")
def usp_runs(tmp_path_factory):
    pytest.importorskip("einops")
    pytest.importorskip("safetensors")
    folder = str(tmp_path_factory.mktemp("usp"))
    return run_ranks(f"{RANKS}:usp_facts", 2, args=(folder, SIZES), timeout=300)


def _tokens(latent):
    _, _, f, h, w = latent
    return f * (h // 2) * (w // 2)  # 1 x 2 x 2 patches


def test_usp_runs_both_guided_branches_on_every_rank(usp_runs):
    """No CFG parallel: each rank makes the prompt's and the negative prompt's call at every step."""
    for facts in usp_runs:
        for run in facts["runs"]:
            assert run["dit_calls"] == 2 * STEPS
            prompts = run["prompts"]
            assert prompts[0::2] == [prompts[0]] * STEPS and prompts[1::2] == [prompts[1]] * STEPS
            assert prompts[0] != prompts[1]  # prompt, negative prompt, prompt, ...
    assert usp_runs[0]["runs"][0]["prompts"] == usp_runs[1]["runs"][0]["prompts"]  # the same on both ranks


def test_usp_splits_the_tokens_and_keeps_the_whole_dit(usp_runs):
    """Each rank's blocks see ceil(S / N) tokens (padded); every rank holds every parameter."""
    for facts in usp_runs:
        assert facts["params"][0] == facts["params"][1]  # split pipeline, one-process pipeline
        for run in facts["runs"]:
            assert run["tokens_in_block"] == [padded_length(_tokens(run["latent"]), 2) // 2]
            assert run["attention_calls"] == run["dit_calls"]  # usp_attn_forward in the one block, per call
            assert run["dit_forward_calls"] == 0  # the loop calls model_fn_wan_video, not dit.forward
    assert [_tokens(r["latent"]) for r in usp_runs[0]["runs"]] == [30, 45]


def test_usp_equals_one_process_only_when_the_tokens_divide(usp_runs):
    """30 tokens: the one-process latents to float32 rounding; 45: the padded token is a key, the video moves."""
    for facts in usp_runs:
        even, odd = facts["runs"]
        assert even["err"] < 1e-5 * even["scale"]
        assert odd["err"] > 1e-4 * odd["scale"]
