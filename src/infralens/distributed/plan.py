r"""A 3-D parallelism plan (``parallelism_plan.yaml``): a model, a cluster and the degrees that split one on the other.

Four blocks of YAML, every key required:

``model``
    a Llama-style decoder: ``layers``, ``hidden_size``, ``ffn_hidden_size``, ``heads``, ``kv_heads``,
    ``vocab_size`` (untied input and output embeddings), and a ``name``;
``cluster``
    ``nodes``, ``gpus_per_node`` and ``gpu_memory_gib``;
``parallelism``
    ``tp``, ``pp`` and ``dp`` degrees and the ``zero_stage`` of the data-parallel axis;
``batch``
    ``micro_batch_size``, ``micro_batches`` per step and ``seq_len``.

The plan is checked when it is built; each rule is one line of
:func:`_check` and its message names the key, the rule and a valid value:

* :math:`t \cdot p \cdot d` equals the world size (every rank holds one shard of every axis);
* :math:`t` divides the query heads and the KV heads (a head is never split between ranks),
  and the MLP's inner width;
* :math:`t` divides ``gpus_per_node`` (a TP group stays inside a node: its all-reduces are on
  the critical path of every layer);
* :math:`p` divides the layers (equal stages);
* ZeRO stage 2 or 3 is refused with :math:`p > 1`, as DeepSpeed's pipeline engine refuses it:
  sharded gradients or parameters are reduced or gathered once per micro-batch unless the
  stage holds them whole for the step. (torch's ``torch.distributed.pipelining`` does run
  FSDP2 stages: it reduce-scatters gradients once per step and, with
  ``reshard_after_forward=False``, gathers weights once per step, holding them whole;
  this model follows DeepSpeed.)
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from infralens.core import attention_params, exact_keys, linear_params, nearest_valid, norm_params

from .links import LINKS


@dataclass(frozen=True)
class ModelSpec:
    """A Llama-style decoder's shape: what the plan splits."""

    name: str
    layers: int
    hidden_size: int
    ffn_hidden_size: int
    """SwiGLU's inner width (three matrices of ``hidden_size x ffn_hidden_size``)."""
    heads: int
    kv_heads: int
    vocab_size: int

    @property
    def head_dim(self) -> int:
        """Channels per head, ``hidden_size // heads``."""
        return self.hidden_size // self.heads

    @property
    def layer_params(self) -> int:
        """One block: attention, SwiGLU and two RMSNorms."""
        d = self.hidden_size
        attn = attention_params(d, heads=self.heads, kv_heads=self.kv_heads, bias=False)
        return attn + 3 * linear_params(d, self.ffn_hidden_size, bias=False) + 2 * norm_params(d)

    @property
    def params(self) -> int:
        """The whole model: embedding, blocks, final norm and an untied output head."""
        embed = self.vocab_size * self.hidden_size
        return 2 * embed + self.layers * self.layer_params + norm_params(self.hidden_size)


@dataclass(frozen=True)
class ClusterSpec:
    """Nodes of identical GPUs."""

    nodes: int
    gpus_per_node: int
    gpu_memory_gib: float

    @property
    def world_size(self) -> int:
        """All GPUs: ``nodes * gpus_per_node``."""
        return self.nodes * self.gpus_per_node


@dataclass(frozen=True)
class ParallelismPlan:
    """A checked plan: building one with a broken rule raises ``ValueError``."""

    model: ModelSpec
    cluster: ClusterSpec
    tp: int
    """Tensor-parallel degree: ranks that split every layer's matrices."""
    pp: int
    """Pipeline-parallel degree: stages, each a run of whole layers."""
    dp: int
    """Data-parallel degree: replicas (or ZeRO shards) of each (TP, PP) shard."""
    zero_stage: int
    """0 (plain data parallel), 1 (optimizer states sharded), 2 (+ gradients), 3 (+ parameters)."""
    micro_batch_size: int
    micro_batches: int
    """Micro-batches per step through each pipeline."""
    seq_len: int

    def __post_init__(self):
        _check(self)

    @property
    def world_size(self) -> int:
        """``tp * pp * dp``, equal to the cluster's GPUs."""
        return self.tp * self.pp * self.dp

    @property
    def global_batch(self) -> int:
        """Sequences per optimizer step: ``micro_batch_size * micro_batches * dp``."""
        return self.micro_batch_size * self.micro_batches * self.dp


_BLOCKS = ("model", "cluster", "parallelism", "batch")
_PLAN_KEYS = {
    "parallelism": ("tp", "pp", "dp", "zero_stage"),
    "batch": ("micro_batch_size", "micro_batches", "seq_len"),
}
_EXAMPLES = {
    "name": "llama-2-70b",
    "layers": 80,
    "hidden_size": 8192,
    "ffn_hidden_size": 28672,
    "heads": 64,
    "kv_heads": 8,
    "vocab_size": 32000,
    "nodes": 8,
    "gpus_per_node": 8,
    "gpu_memory_gib": 80,
    "tp": 8,
    "pp": 4,
    "dp": 2,
    "zero_stage": 1,
    "micro_batch_size": 1,
    "micro_batches": 16,
    "seq_len": 4096,
}


def _fail(path: str, value: object, rule: str, valid: str) -> ValueError:
    return ValueError(f"{path}={value}: {rule}; {valid}")


def _nearest(key: str, value: int, ok) -> str:
    return f"nearest valid {key}: " + " or ".join(map(str, nearest_valid(value, ok)))


def _check(plan: ParallelismPlan) -> None:
    """Every rule of a plan, in the order a reader would check them by hand."""
    m, c = plan.model, plan.cluster
    if not isinstance(m.name, str) or not m.name:
        raise ValueError(f"model.name must be a non-empty string, e.g. name: llama-2-70b; got {m.name!r}")
    for block, spec in (("model", m), ("cluster", c)):
        for f in fields(spec):
            value = getattr(spec, f.name)
            if f.name != "name" and (isinstance(value, bool) or not isinstance(value, numbers.Real) or value <= 0):
                raise ValueError(
                    f"{block}.{f.name} must be a number > 0, e.g. {f.name}: {_EXAMPLES[f.name]}; got {value!r}"
                )
    for key in ("tp", "pp", "dp", "micro_batch_size", "micro_batches", "seq_len"):
        value = getattr(plan, key)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{key} must be a whole number >= 1, e.g. {key}: {_EXAMPLES[key]}; got {value!r}")
    stage = plan.zero_stage
    if isinstance(stage, bool) or not isinstance(stage, numbers.Integral) or stage not in (0, 1, 2, 3):
        raise ValueError(f"parallelism.zero_stage must be 0, 1, 2 or 3, e.g. zero_stage: 1; got {plan.zero_stage!r}")
    if m.hidden_size % m.heads:
        raise _fail("model.hidden_size", m.hidden_size, f"must be a multiple of heads={m.heads}", "e.g. 8192 and 64")
    if m.heads % m.kv_heads:
        raise _fail("model.kv_heads", m.kv_heads, f"must divide heads={m.heads} (GQA groups)", "e.g. kv_heads: 8")

    world, t, p, d = c.world_size, plan.tp, plan.pp, plan.dp
    if t * p * d != world:
        hint = f"e.g. dp: {world // (t * p)}" if world % (t * p) == 0 else f"e.g. tp * pp dividing {world}"
        raise ValueError(
            f"parallelism: tp*pp*dp = {t}*{p}*{d} = {t * p * d} must equal the world size, nodes*gpus_per_node = "
            f"{c.nodes}*{c.gpus_per_node} = {world} (every rank holds one shard of each axis); {hint}"
        )

    def tp_ok(v: int) -> bool:
        whole = m.heads % v == 0 and m.kv_heads % v == 0 and m.ffn_hidden_size % v == 0
        return whole and c.gpus_per_node % v == 0 and world % (v * p) == 0

    for what, count in (("heads", m.heads), ("kv_heads", m.kv_heads)):
        if count % t:
            raise _fail(
                "parallelism.tp",
                t,
                f"must divide model.{what}={count}: each rank holds whole heads, a head's Q, K and V columns "
                "never split",
                _nearest("tp", t, tp_ok),
            )
    if m.ffn_hidden_size % t:
        raise _fail(
            "parallelism.tp",
            t,
            f"must divide model.ffn_hidden_size={m.ffn_hidden_size}: the MLP's columns split evenly",
            _nearest("tp", t, tp_ok),
        )
    if c.gpus_per_node % t:
        raise _fail(
            "parallelism.tp",
            t,
            f"must divide cluster.gpus_per_node={c.gpus_per_node}: a TP group stays inside one node, its "
            "all-reduces (two per layer, forward) are on every layer's critical path and NVLink is "
            f"{LINKS['nvlink'].bandwidth / LINKS['network'].bandwidth:g}x the network (distributed.LINKS)",
            _nearest("tp", t, tp_ok),
        )
    if m.layers % p:
        raise _fail(
            "parallelism.pp",
            p,
            f"must divide model.layers={m.layers} (equal stages of whole layers)",
            _nearest("pp", p, lambda v: m.layers % v == 0 and world % (v * t) == 0),
        )
    if p > 1 and plan.zero_stage >= 2:
        raise _fail(
            "parallelism.zero_stage",
            plan.zero_stage,
            f"stages 2 and 3 shard gradients or parameters, which with pp={p} are reduced or gathered once "
            "per micro-batch unless kept whole for the step (DeepSpeed's pipeline engine refuses it; this "
            "model follows DeepSpeed)",
            "e.g. zero_stage: 1",
        )


# --- reading YAML -------------------------------------------------------------------------------------------


def _block(name: str, value: object, keys: tuple[str, ...]) -> Mapping:
    """``value`` if it is a mapping with exactly ``keys``; the messages name the full key path."""
    what = name or "the plan"
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a mapping of {', '.join(keys)}; got {type(value).__name__}")
    exact_keys(value, keys, path=name, owner=what, why="every choice is written down", examples=_EXAMPLES)
    return value


def load_plan(path_or_text: str | os.PathLike | Mapping) -> ParallelismPlan:
    """Read a ``parallelism_plan.yaml`` (a path, YAML text or a mapping) and check it.

    >>> text = '''
    ... model: {name: tiny, layers: 4, hidden_size: 64, ffn_hidden_size: 176, heads: 8, kv_heads: 4, vocab_size: 100}
    ... cluster: {nodes: 2, gpus_per_node: 4, gpu_memory_gib: 80}
    ... parallelism: {tp: 4, pp: 2, dp: 1, zero_stage: 1}
    ... batch: {micro_batch_size: 1, micro_batches: 8, seq_len: 128}
    ... '''
    >>> plan = load_plan(text)
    >>> plan.tp * plan.pp * plan.dp, plan.cluster.world_size
    (8, 8)
    >>> load_plan(text.replace("tp: 4, pp: 2", "tp: 8, pp: 1"))
    Traceback (most recent call last):
    ...
    ValueError: parallelism.tp=8: must divide model.kv_heads=4: ...; nearest valid tp: 4
    """
    if isinstance(path_or_text, Mapping):
        data = path_or_text
    else:
        is_path = isinstance(path_or_text, os.PathLike) or (
            isinstance(path_or_text, str) and "\n" not in path_or_text and path_or_text.endswith((".yaml", ".yml"))
        )
        text = Path(path_or_text).read_text(encoding="utf-8") if is_path else path_or_text
        if not isinstance(text, str):
            raise ValueError(f"path_or_text must be a .yaml path, YAML text or a mapping; got {type(text).__name__}")
        data = yaml.safe_load(text)
    data = _block("", data, _BLOCKS)
    model = _block("model", data["model"], tuple(f.name for f in fields(ModelSpec)))
    cluster = _block("cluster", data["cluster"], tuple(f.name for f in fields(ClusterSpec)))
    degrees = _block("parallelism", data["parallelism"], _PLAN_KEYS["parallelism"])
    batch = _block("batch", data["batch"], _PLAN_KEYS["batch"])
    return ParallelismPlan(ModelSpec(**model), ClusterSpec(**cluster), **degrees, **batch)
