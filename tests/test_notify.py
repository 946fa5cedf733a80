"""What a decision is worth telling (issue 17): pure, from engine decisions."""

from __future__ import annotations

from dataclasses import replace

from balancer.engine import decide
from balancer.notify import NoticeKind, decision_notices, saturated_without_move
from tests.engine.builders import config, engine_input, node, snapshot, vm
from tests.support.receiver import Receiver
from tests.support.waiting import free_port


def test_a_saturated_node_without_a_move_is_told_after_the_hold() -> None:
    hot = snapshot([node("pve1", cpu=0.95), node("pve2", cpu=0.9)],
                   [vm(100, cpu=4.0), vm(101, cpu=4.0)])
    d = decide(engine_input(hot))
    assert d.move is None
    assert saturated_without_move(d, quiet=False) == {"pve1", "pve2"}
    assert saturated_without_move(d, quiet=True) == set(), "quiet hours hold back on purpose"
    [notice] = decision_notices(d, {"pve1": 100.0, "pve2": 900.0}, 900, {})
    assert (notice.kind, notice.subject) == (NoticeKind.NODE_STUCK, "pve2")


def test_an_unrepairable_rule_and_a_drain_finished_once_per_drain() -> None:
    snap = snapshot([node("pve1"), node("pve2", mem_gib=240)],
                    [vm(200, tags=["plb_pin_pve2"]), vm(300, node="pve2", status="stopped")])
    d = decide(replace(engine_input(snap, cfg=config()), drained={"pve2": "by alice"}))
    kinds = {(n.kind, n.subject): n for n in decision_notices(d, {}, 900, {"pve2": 1000.0})}
    assert set(kinds) == {(NoticeKind.RULE_UNREPAIRABLE, "pin:its pinned nodes pve2:pve1"),
                          (NoticeKind.DRAIN_FINISHED, "pve2:1000.0")}
    assert kinds[(NoticeKind.DRAIN_FINISHED, "pve2:1000.0")].throttle is not None


def test_a_partial_delivery_is_retried_only_where_it_did_not_arrive(
        receiver: Receiver) -> None:
    from balancer.config import Secret
    from balancer.notify import Notifier, migration_failed

    late_port = free_port()
    notifier = Notifier((Secret(f"json://127.0.0.1:{receiver.port}/a"),
                         Secret(f"json://127.0.0.1:{late_port}/b")))
    notice = migration_failed(101, "pve1", "pve2", "migration aborted")
    assert notifier.send(notice) == (2,), "the second URL is down"
    assert len(receiver.received) == 1
    late = Receiver(late_port)
    try:
        assert notifier.send(replace(notice, pending=(2,))) == ()
        assert len(receiver.received) == 1, "not sent twice to the URL that had it"
        assert [r["path"] for r in late.received] == ["/b"]
    finally:
        late.server.shutdown()
    assert Notifier(()).send(notice) == (0,), "no usable URL is no delivery"
