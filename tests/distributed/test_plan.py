"""load_plan: the lab's YAML loads; every rule refuses its broken plan with the key, the rule and a valid value."""

from pathlib import Path

import pytest

from infralens.distributed import ClusterSpec, ModelSpec, ParallelismPlan, load_plan

ROOT = Path(__file__).resolve().parents[2]
PLAN = ROOT / "code/distributed/lab-07-3d-parallelism-plan/parallelism_plan.yaml"
TEXT = PLAN.read_text()


def test_the_lab_plan_loads():
    plan = load_plan(PLAN)
    assert (plan.tp, plan.pp, plan.dp, plan.zero_stage) == (8, 4, 2, 1)
    assert plan.world_size == plan.cluster.world_size == 64
    assert plan.global_batch == 1 * 16 * 2
    assert load_plan(TEXT) == plan == load_plan(str(PLAN))


def test_llama_2_parameter_counts():
    """The published sizes of Llama 2 7B and 70B (6.74B and 68.98B parameters, untied embeddings)."""
    assert ModelSpec("7b", 32, 4096, 11008, 32, 32, 32000).params == 6_738_415_616
    assert load_plan(TEXT).model.params == 68_976_648_192


def edit(old: str, new: str) -> str:
    assert old in TEXT, old
    return TEXT.replace(old, new)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (  # multiplies to 32, not 64
            edit("dp: 2  ", "dp: 1  "),
            ["parallelism: tp*pp*dp = 8*4*1 = 32 must equal the world size", "8*8 = 64", "e.g. dp: 2"],
        ),
        (  # no dp can fix it: 64 / (5 * 4) is not whole
            edit("tp: 8  ", "tp: 5  "),
            ["tp*pp*dp = 5*4*2 = 40", "e.g. tp * pp dividing 64"],
        ),
        (  # multiplies right, splits a head: Qwen2.5-7B's 28 query heads (4 KV heads) at tp 8
            edit("heads: 64 ", "heads: 28 ")
            .replace("hidden_size: 8192", "hidden_size: 3584")
            .replace("kv_heads: 8 ", "kv_heads: 4 "),
            ["parallelism.tp=8: must divide model.heads=28", "whole heads", "nearest valid tp: 4"],
        ),
        (  # GQA: 8 KV heads cannot be split 16 ways even if 16 divided the heads
            edit("kv_heads: 8 ", "kv_heads: 4 "),
            ["parallelism.tp=8: must divide model.kv_heads=4", "nearest valid tp: 4"],
        ),
        (
            edit("ffn_hidden_size: 28672", "ffn_hidden_size: 28676"),
            ["parallelism.tp=8: must divide model.ffn_hidden_size=28676", "nearest valid tp: 4"],
        ),
        (  # multiplies right, TP across two nodes
            edit("tp: 8  ", "tp: 16 ").replace("dp: 2  ", "dp: 1  ").replace("kv_heads: 8 ", "kv_heads: 64 "),
            ["parallelism.tp=16: must divide cluster.gpus_per_node=8", "inside one node", "9x", "nearest valid tp: 8"],
        ),
        (
            edit("pp: 4  ", "pp: 8  ").replace("dp: 2  ", "dp: 1  ").replace("layers: 80", "layers: 60"),
            ["parallelism.pp=8: must divide model.layers=60", "nearest valid pp: 4"],
        ),
        (
            edit("zero_stage: 1", "zero_stage: 3"),
            ["parallelism.zero_stage=3", "once per micro-batch", "e.g. zero_stage: 1"],
        ),
        (edit("zero_stage: 1", "zero_stage: 4"), ["zero_stage must be 0, 1, 2 or 3", "got 4"]),
        (edit("zero_stage: 1", "zero_stage: 1.0"), ["zero_stage must be 0, 1, 2 or 3", "got 1.0"]),
        (edit("micro_batches: 16", "micro_batches: 0"), ["micro_batches must be a whole number >= 1", "got 0"]),
        (edit("seq_len: 4096", "seq_len: true"), ["seq_len must be a whole number >= 1", "got True"]),
        (edit("gpu_memory_gib: 80", "gpu_memory_gib: -80"), ["cluster.gpu_memory_gib must be a number > 0"]),
        (edit("hidden_size: 8192", "hidden_size: 8100"), ["model.hidden_size=8100: must be a multiple of heads=64"]),
        (edit("kv_heads: 8 ", "kv_heads: 7 "), ["model.kv_heads=7: must divide heads=64"]),
        (edit("name: llama-2-70b", "name: ''"), ["model.name must be a non-empty string"]),
        (edit("  tp: 8", "  tensor_parallel: 8"), ["unknown key parallelism.tensor_parallel", "takes: tp, pp"]),
        (edit("  zero_stage: 1", "  zero_stag: 1"), ["did you mean parallelism.zero_stage?"]),
        (edit("  seq_len: 4096", ""), ["batch.seq_len is missing", "e.g. seq_len: 4096"]),
        (edit("batch:", "batches:"), ["unknown key batches; did you mean batch? the plan takes: model, cluster"]),
        ("[1, 2]", ["the plan must be a mapping of model, cluster, parallelism, batch; got list"]),
    ],
)
def test_each_rule_names_itself(text, words):
    with pytest.raises(ValueError) as err:
        load_plan(text)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_a_plan_built_in_code_is_checked_too():
    model = ModelSpec("tiny", 4, 64, 176, 8, 8, 100)
    with pytest.raises(ValueError, match=r"parallelism\.tp=3: must divide model\.heads=8"):
        ParallelismPlan(
            model, ClusterSpec(1, 3, 80), tp=3, pp=1, dp=1, zero_stage=0, micro_batch_size=1, micro_batches=1, seq_len=8
        )


@pytest.mark.parametrize(("pp", "refused"), [(1, False), (2, True)])
def test_zero_2_is_refused_with_any_pipeline(pp, refused):
    # two stages are already a pipeline: gradients would be reduced once per micro-batch
    model = ModelSpec("tiny", 4, 64, 176, 8, 8, 100)
    build = lambda: ParallelismPlan(  # noqa: E731
        model,
        ClusterSpec(1, 2, 80),
        tp=1,
        pp=pp,
        dp=2 // pp,
        zero_stage=2,
        micro_batch_size=1,
        micro_batches=2,
        seq_len=8,
    )
    if refused:
        with pytest.raises(ValueError, match=r"parallelism\.zero_stage=2"):
            build()
    else:
        assert build().zero_stage == 2


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        load_plan(ROOT / "no_such_plan.yaml")
