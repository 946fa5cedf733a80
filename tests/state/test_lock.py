from __future__ import annotations

import threading

import pytest
import redis

from balancer.state import LockNotHeld, StateStore
from tests.support.redis_server import wait_until


def test_only_one_of_two_acquirers_wins(store: StateStore) -> None:
    first = store.lock.acquire(30)
    second = store.lock.acquire(30)
    assert first is not None and len(first) == 32
    assert second is None


def test_release_with_wrong_token_does_nothing(store: StateStore) -> None:
    token = store.lock.acquire(30)
    assert token is not None
    assert store.lock.release("not-the-token") is False
    assert store.lock.holder() is not None
    assert store.lock.release(token) is True
    assert store.lock.holder() is None
    assert store.lock.release(token) is False


def test_release_never_deletes_a_later_owners_lock(store: StateStore) -> None:
    old = store.lock.acquire(30)
    assert old is not None and store.lock.release(old)
    new = store.lock.acquire(30)
    assert new is not None
    assert store.lock.release(old) is False
    assert store.lock.owns(new)


def test_extend_only_by_owner(store: StateStore, raw: redis.Redis) -> None:
    token = store.lock.acquire(5)
    assert token is not None
    assert store.lock.extend("intruder", 100) is False
    assert raw.pttl(store.lock.lock_key) <= 5000
    assert store.lock.extend(token, 100) is True
    assert 5000 < raw.pttl(store.lock.lock_key) <= 100_000
    assert 5000 < raw.pttl(store.lock.info_key) <= 100_000


def test_ttl_expiry_frees_the_lock(store: StateStore) -> None:
    token = store.lock.acquire(0.2)
    assert token is not None
    wait_until(lambda: store.lock.holder() is None, timeout=5, what="lock expiry")
    assert store.lock.acquire(30) is not None
    assert store.lock.extend(token, 30) is False


def test_attach_and_holder_round_trip(store: StateStore, raw: redis.Redis) -> None:
    token = store.lock.acquire(60, now=1_700_000_000.25)
    assert token is not None
    assert store.lock.attach(token, vmid=101, source="pve1", target="pve2",
                             started_at=1_700_000_001.5, decision_id="d-42")
    assert store.lock.attach(token, upid="UPID:pve1:0001:qmigrate:101:root@pam:",
                             cpu_share_source=0.25, cpu_share_target=0.125)
    with pytest.raises(ValueError, match="note"):
        store.lock.attach(token, note=[1, 2])  # the lock describes a migration, nothing else
    info = store.lock.holder()
    assert info is not None
    assert info.acquired_at == 1_700_000_000.25
    assert 0 < info.ttl_remaining <= 60
    assert (info.vmid, info.source, info.target) == (101, "pve1", "pve2")
    assert info.upid == "UPID:pve1:0001:qmigrate:101:root@pam:"
    assert info.started_at == 1_700_000_001.5
    assert info.decision_id == "d-42"
    assert (info.cpu_share_source, info.cpu_share_target) == (0.25, 0.125)
    assert info.migration is not None and info.migration.upid == info.upid
    assert token not in repr(info)
    # the description lives exactly as long as the lock
    assert 0 < raw.pttl(store.lock.info_key) <= raw.pttl(store.lock.lock_key) + 50


def test_attach_requires_ownership(store: StateStore, raw: redis.Redis) -> None:
    assert store.lock.attach("nobody", vmid=1) is False
    assert not raw.exists(store.lock.info_key)
    token = store.lock.acquire(30)
    assert token is not None
    assert store.lock.attach("nobody", vmid=1) is False
    info = store.lock.holder()
    assert info is not None and info.vmid is None
    with pytest.raises(ValueError, match="acquired_at"):
        store.lock.attach(token, acquired_at=0)
    with pytest.raises(ValueError, match="finishing"):
        store.lock.attach(token, finishing=True)


def test_a_new_owner_does_not_inherit_the_old_description(store: StateStore) -> None:
    token = store.lock.acquire(30)
    assert token is not None and store.lock.attach(token, vmid=7, upid="U")
    assert store.lock.release(token)
    token = store.lock.acquire(30)
    info = store.lock.holder()
    assert info is not None and info.vmid is None and info.upid is None


def test_require_raises_lock_not_held(store: StateStore) -> None:
    token = store.lock.acquire(30)
    assert token is not None
    store.lock.require(token)
    store.lock.require(token, ttl_seconds=40)
    with pytest.raises(LockNotHeld):
        store.lock.require("other")
    store.lock.release(token)
    with pytest.raises(LockNotHeld):
        store.lock.require(token, ttl_seconds=40)


def test_threads_race_exactly_one_wins(store: StateStore) -> None:
    n = 16
    barrier = threading.Barrier(n)
    results: list[str | None] = []
    guard = threading.Lock()

    def contend() -> None:
        barrier.wait()
        token = store.lock.acquire(30)
        with guard:
            results.append(token)

    threads = [threading.Thread(target=contend) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == n
    assert len([r for r in results if r is not None]) == 1


def test_eval_lock_is_independent(store: StateStore) -> None:
    assert store.lock.acquire(30) is not None
    token = store.eval_lock.acquire(5)
    assert token is not None
    assert store.eval_lock.acquire(5) is None
    assert store.eval_lock.lock_key != store.lock.lock_key


def test_hold_context_manager(store: StateStore) -> None:
    with store.eval_lock.hold(5) as token:
        assert token is not None
        with store.eval_lock.hold(5) as busy:
            assert busy is None
        assert store.eval_lock.owns(token)
    assert store.eval_lock.holder() is None


def test_force_release(store: StateStore) -> None:
    assert store.lock.force_release() is False
    token = store.lock.acquire(30)
    assert token is not None
    assert store.lock.force_release() is True
    assert store.lock.holder() is None


def test_take_over_a_migration_whose_follower_died(store: StateStore) -> None:
    lock, hb = store.lock, store.heartbeat
    assert lock.take_over(hb, 60, 10) is None  # nothing held
    old = lock.acquire(60)
    assert old is not None
    assert lock.take_over(hb, 60, 10) is None  # no UPID yet: the owner is still starting it
    assert hb.beat(old, 10)
    assert lock.attach(old, vmid=100, upid="UPID:x")
    assert lock.take_over(hb, 60, 10) is None  # follower alive
    assert hb.stop(old)  # follower dies (its heartbeat disappears)
    new = lock.take_over(hb, 90, 10, now=1234.5)
    assert new is not None and new != old
    assert lock.take_over(hb, 90, 10) is None  # only one evaluate adopts it
    info = lock.holder()
    assert info is not None and info.upid == "UPID:x" and info.vmid == 100
    assert 60 < info.ttl_remaining <= 90
    hb_info = hb.info()
    assert hb_info is not None and hb_info.at == 1234.5
    # the presumed-dead owner is shut out everywhere
    assert hb.beat(old, 10) is False
    assert lock.extend(old, 60) is False
    assert lock.release(old) is False
    assert lock.release(new) is True
