"""A rank of DiffSynth-Studio's Wan USP run (``enable_usp``), on gloo, with xDiT stood in.

Loaded by path in every rank by :func:`infralens.distributed.run_ranks`, so it
imports its sibling helpers through a package it registers itself (a file
loaded by path has no package for relative imports).

What runs is DiffSynth-Studio's: ``WanVideoPipeline.from_pretrained`` on a tiny
DiT file, ``enable_usp`` (which patches every block's self-attention with
``usp_attn_forward``), ``__call__``'s loop with guidance, and
``model_fn_wan_video`` with ``use_unified_sequence_parallel=True`` (chunk, pad,
the blocks, the all-gather after the head, the trim). xDiT is not installed:
its rank getters are ``torch.distributed``'s, its group's ``all_gather`` is
``dist.all_gather`` and a concatenation, and ``xFuserLongContextAttention`` is
an exact attention that gathers every rank's keys and values and uses all of
them (DiffSynth passes it no mask and no length).
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.functional import scaled_dot_product_attention as sdpa

HERE = Path(__file__).resolve().parent
_PACKAGE = "_infralens_upstream_helpers"


def _helpers():
    if _PACKAGE not in sys.modules:
        package = types.ModuleType(_PACKAGE)
        package.__path__ = [str(HERE)]
        sys.modules[_PACKAGE] = package
    return importlib.import_module(f"{_PACKAGE}._wan_pipeline")


def _gather(x: torch.Tensor, dim: int) -> torch.Tensor:
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=dim)


class _Group:
    def all_gather(self, x, dim=0):
        return _gather(x, dim)


class _LongContextAttention:
    """xDiT's attention stood in: (B, s, H, Dh) per rank, attends to every rank's keys, no mask."""

    calls = 0

    def __init__(self, attn_type=None, ring_impl_type=None):
        pass

    def __call__(self, attn, query, key, value):
        _LongContextAttention.calls += 1
        k, v = _gather(key, 1), _gather(value, 1)  # (B, N s, H, Dh): padded rows included
        out = sdpa(query.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)  # (B, s, H, Dh)


def xdit_stubs(rank, world_size, sp_group, attention) -> dict[str, types.ModuleType]:
    """Stand-in modules for the parts of xDiT (``xfuser``, ``yunchang``) DiffSynth's USP module imports.

    ``rank`` and ``world_size`` are the sequence-parallel getters, ``sp_group`` the group factory,
    ``attention`` the long-context attention class.
    """
    stubs = {
        "yunchang": {},
        "yunchang.kernels": {"AttnType": types.SimpleNamespace(FA="fa", NPU="npu")},
        "yunchang.comm": {},
        "yunchang.comm.all_to_all": {"SeqAllToAll4D": object},
        "xfuser": {},
        "xfuser.core": {},
        "xfuser.core.distributed": {
            "get_sequence_parallel_rank": rank,
            "get_sequence_parallel_world_size": world_size,
            "get_sp_group": sp_group,
        },
        "xfuser.core.long_ctx_attention": {"xFuserLongContextAttention": attention},
    }
    modules = {}
    for name, attrs in stubs.items():
        modules[name] = types.ModuleType(name)
        modules[name].__dict__.update(attrs)
    return modules


def _stand_in_xdit() -> None:
    sys.modules.update(xdit_stubs(dist.get_rank, dist.get_world_size, _Group, _LongContextAttention))


def usp_facts(rank: int, world_size: int, folder: str, sizes: list[tuple[int, int, int]]) -> dict:
    """For each (height, width, frames): DiffSynth's USP call against the same call in one process."""
    wp = _helpers()
    dit_path = wp.save_tiny_dit(Path(folder) / f"dit_rank{rank}.safetensors", seed=0)  # the same weights
    _stand_in_xdit()
    diffsynth = sys.modules["diffsynth"]  # registered bare: set the flag its __init__ would (no NPU here)
    diffsynth.IS_NPU_AVAILABLE = getattr(diffsynth, "IS_NPU_AVAILABLE", False)
    torch.cpu.empty_cache = lambda: None  # usp_attn_forward empties the device cache; torch.cpu has none
    facts: dict = {"rank": rank, "runs": []}
    with wp.registered(dit_path):
        alone = wp.attach_standins(wp.from_pretrained(wp.model_config(path=dit_path), torch_dtype=torch.float32))
        split = wp.attach_standins(wp.from_pretrained(wp.model_config(path=dit_path), torch_dtype=torch.float32))
    split.enable_usp()
    facts["params"] = [sum(p.numel() for p in pipe.dit.parameters()) for pipe in (alone, split)]
    tokens_in_block: list[int] = []
    split.dit.blocks[0].register_forward_pre_hook(lambda m, args: tokens_in_block.append(args[0].shape[1]))
    forward_calls: list[int] = []
    split.dit.register_forward_pre_hook(lambda m, args: forward_calls.append(1))  # the patched usp_dit_forward
    model_fn, load = split.model_fn, split.load_models_to_device
    for height, width, frames in sizes:
        split.model_fn, split.load_models_to_device = model_fn, load  # a fresh Recorder per size
        tokens_in_block.clear()
        forward_calls.clear()
        _LongContextAttention.calls = 0
        rec = wp.Recorder(split)
        kwargs = dict(height=height, width=width, num_frames=frames, num_inference_steps=2, cfg_scale=5.0, seed=0)
        ours, _ = wp.call(split, **kwargs)
        ref, _ = wp.call(alone, **kwargs)
        facts["runs"].append(
            {
                "latent": tuple(ref.shape),
                "dit_calls": len(rec.calls),
                "prompts": [round(c["context_tensor"].sum().item(), 3) for c in rec.calls],
                "latents_seen": sorted({c["latents"] for c in rec.calls}),
                "tokens_in_block": sorted(set(tokens_in_block)),
                "attention_calls": _LongContextAttention.calls,
                "dit_forward_calls": len(forward_calls),
                "err": (ours - ref).abs().max().item(),
                "scale": ref.abs().max().item(),
            }
        )
    return facts
