"""DiffSynth-Studio's unified sequence parallel (USP) for Wan, run where it can be run here.

DiffSynth-Studio's sequence parallel path (``use_usp=True``) lives in
``diffsynth/utils/xfuser/xdit_context_parallel.py`` and delegates attention to
xDiT (``xfuser``, built on ``yunchang``). Neither is installed in this book's
environments, so the attention itself is not run. What is run: the import
that fails without them, and DiffSynth's own splitting helpers (``get_current_chunk``,
``pad_freqs``), with xDiT's rank getters replaced by plain functions.
"""

from __future__ import annotations

import importlib
import sys
import types

import pytest
import torch

from infralens.distributed import split_sequence

from ._diffsynth import import_submodule

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
    stubs = {
        "yunchang": {},
        "yunchang.kernels": {"AttnType": types.SimpleNamespace(FA="fa", NPU="npu")},
        "yunchang.comm": {},
        "yunchang.comm.all_to_all": {"SeqAllToAll4D": object},
        "xfuser": {},
        "xfuser.core": {},
        "xfuser.core.distributed": {
            "get_sequence_parallel_rank": lambda: world["rank"],
            "get_sequence_parallel_world_size": lambda: world["size"],
            "get_sp_group": lambda: None,
        },
        "xfuser.core.long_ctx_attention": {"xFuserLongContextAttention": object},
    }
    for name, attrs in stubs.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
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
