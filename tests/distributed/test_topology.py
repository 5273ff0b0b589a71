"""plan_links: the link of each axis follows torch's mesh groups; seconds are the alpha-beta sums of its calls."""

import pytest

from infralens.distributed import LINKS, collective_time, load_plan, mesh_layout, op_seconds, plan_links, step_traffic

from .test_plan import PLAN


def test_the_lab_plan_links():
    plan = load_plan(PLAN)
    tp, pp, dp = plan_links(plan)
    assert [(a.traffic.axis, a.nodes_spanned, a.link) for a in (tp, pp, dp)] == [
        ("tp", 1, "nvlink"),
        ("pp", 4, "network"),
        ("dp", 2, "network"),
    ]
    nv, net = LINKS["nvlink"], LINKS["network"]
    ((op, calls, n),) = tp.traffic.ops
    assert tp.seconds == pytest.approx(calls * collective_time(op, n, 8, alpha=nv.alpha, beta=nv.beta))
    ((op, calls, n),) = pp.traffic.ops
    assert pp.seconds == pytest.approx(calls * (net.alpha + n / net.bandwidth))
    assert dp.seconds == pytest.approx(op_seconds("all_reduce", dp.traffic.ops[0][2], 2, net))


def test_a_layout_with_tp_outermost_puts_tp_on_the_network():
    """Same degrees, TP across nodes: model its all-reduces on the network instead of NVLink."""
    plan = load_plan(PLAN)
    wrong = mesh_layout({"tp": 8, "pp": 4, "dp": 2})
    assert wrong.nodes_spanned("tp", 8) == 8
    ((op, calls, n),) = step_traffic(plan)[0].ops
    slow = calls * op_seconds(op, n, 8, LINKS["network"])
    assert 8 < slow / plan_links(plan)[0].seconds < 9  # under the bandwidth ratio: NVLink pays latency too


def test_layout_must_match():
    plan = load_plan(PLAN)
    with pytest.raises(ValueError, match=r"layout must be the plan's mesh \{'pp': 4, 'dp': 2, 'tp': 8\}"):
        plan_links(plan, layout=mesh_layout({"pp": 2, "dp": 4, "tp": 8}))
