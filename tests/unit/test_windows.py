"""Per-partition window bookkeeping and commit positions (SPEC §5)."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest

from metrics_pipeline.windows import (ClosedWindow, PartitionWindows, RecentWindowMembers, WindowMember,
                                      WindowTracker)

T0 = datetime(2026, 11, 26, tzinfo=timezone.utc)


def member(offset: int) -> WindowMember:
    return WindowMember(offset, f"id-{offset}", "web01", T0, 1.0, 2.0, 3.0, 4.0, 0)


def test_a_window_closes_at_its_size_with_its_first_receive_and_last_store_times() -> None:
    p = PartitionWindows("t", 0, size=3)
    assert p.add(member(0), received_at=1.0, stored_at=1.5) is None
    assert p.add(member(1), received_at=2.0, stored_at=2.5) is None
    window = p.add(member(2), received_at=3.0, stored_at=3.5)
    assert window is not None
    assert [m.offset for m in window.members] == [0, 1, 2]
    assert (window.received_at, window.stored_at) == (1.0, 3.5)
    assert (window.first_offset, window.last_offset, window.partition) == (0, 2, 0)
    assert p.open_count == 0 and p.commit_position() == 3


def test_a_window_rebuilt_at_the_size_it_was_stored_with_closes_there_and_the_next_one_at_the_setting() -> None:
    p = PartitionWindows("t", 0, size=3)
    assert p.add(member(0), 0, 0, size=5) is None  # opens a window stored with 5 members
    assert [p.add(member(o), 0, 0, size=99) for o in (1, 2, 3)] == [None, None, None]  # only the opener's counts
    rebuilt = p.add(member(4), 0, 0)
    assert rebuilt is not None and [m.offset for m in rebuilt.members] == [0, 1, 2, 3, 4]
    assert p.commit_position() == 5
    assert p.add(member(5), 0, 0) is None and p.add(member(6), 0, 0) is None
    assert [m.offset for m in p.add(member(7), 0, 0).members] == [5, 6, 7]


def test_commit_position_is_the_first_offset_of_the_open_window() -> None:
    p = PartitionWindows("t", 0, size=3)
    assert p.commit_position() is None
    p.skip(10)  # an invalid message before any window: done, commit past it
    assert p.commit_position() == 11
    p.add(member(11), 0, 0)
    p.skip(12)  # invalid inside the open window: not committed yet
    p.add(member(13), 0, 0)
    assert p.commit_position() == 11
    assert p.add(member(14), 0, 0) is not None
    assert p.commit_position() == 15
    p.skip(15)
    assert p.commit_position() == 16


def test_a_closed_window_read_again_is_not_committed_through_until_it_has_been_passed() -> None:
    p = PartitionWindows("t", 0, size=3)
    p.skip(0, counted_until=2)  # offsets 0-2 already count in a closed window (written, not committed)
    assert p.commit_position() is None
    p.skip(1, counted_until=2)
    assert p.commit_position() is None  # 2 would be inside that window
    p.skip(2, counted_until=2)
    assert p.commit_position() == 3
    p.add(member(3), 0, 0)
    assert p.commit_position() == 3
    p.skip(4, counted_until=9)
    assert p.commit_position() is None
    p.reset()  # a new log: nothing to wait for
    p.skip(0)
    assert p.commit_position() == 1


def test_offsets_already_handled_are_recognised_and_refused() -> None:
    p = PartitionWindows("t", 0, size=3)
    p.add(member(5), 0, 0)
    assert p.already_done(5) and p.already_done(4) and not p.already_done(6)
    with pytest.raises(ValueError):
        p.add(member(5), 0, 0)


def test_windows_never_mix_partitions() -> None:
    tracker = WindowTracker("t", size=2)
    closed = [tracker.partition(0).add(member(0), 0, 0), tracker.partition(1).add(member(0), 0, 0),
              tracker.partition(0).add(member(1), 0, 0)]
    assert closed[0] is None and closed[1] is None and closed[2].partition == 0
    assert tracker.open_messages() == 1
    assert tracker.positions_to_commit() == {0: 2, 1: 0}


def test_positions_to_commit_only_report_what_moved() -> None:
    tracker = WindowTracker("t", size=2)
    tracker.partition(0).add(member(0), 0, 0)
    tracker.partition(0).add(member(1), 0, 0)
    assert tracker.positions_to_commit() == {0: 2}
    tracker.mark_committed({0: 2})
    assert tracker.positions_to_commit() == {}
    tracker.partition(0).add(member(2), 0, 0)  # opens a window at 2: position unchanged
    assert tracker.positions_to_commit() == {}
    tracker.partition(0).add(member(3), 0, 0)
    assert tracker.positions_to_commit() == {0: 4}


def test_dropping_a_revoked_partition_forgets_its_open_window() -> None:
    tracker = WindowTracker("t", size=5)
    for offset in range(3):
        tracker.partition(0).add(member(offset), 0, 0)
    tracker.partition(1).add(member(0), 0, 0)
    assert tracker.drop([0]) == 3
    assert tracker.open_messages() == 1
    # The partition comes back later (reassigned): it starts afresh from the commit.
    assert tracker.partition(0).commit_position() is None
    assert tracker.drop_all() == 1


def test_window_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        PartitionWindows("t", 0, size=0)


def test_a_partition_remembers_what_it_handled_at_each_offset() -> None:
    p = PartitionWindows("t", 0, size=3)
    p.add(member(0), 0, 0, fingerprint=111)
    p.skip(1, fingerprint=222)
    assert p.seen_before(0, 111) and p.seen_before(1, 222)
    assert not p.seen_before(0, 999) and not p.seen_before(2, 111)


def test_reset_starts_the_partition_afresh() -> None:
    p = PartitionWindows("t", 0, size=5)
    for offset in range(3):
        p.add(member(offset), 0, 0, fingerprint=offset)
    assert p.reset() == 3
    assert p.commit_position() is None and not p.already_done(0) and not p.seen_before(0, 0)
    p.add(member(0), 0, 0)  # offset 0 again, from the new log
    assert p.commit_position() == 0


def test_fingerprints_are_bounded_and_the_last_ones_are_all_remembered() -> None:
    from metrics_pipeline.windows import REMEMBERED_OFFSETS

    p = PartitionWindows("t", 0, size=10**9)
    for offset in range(3 * REMEMBERED_OFFSETS):
        p.skip(offset, fingerprint=-offset * 7919)  # hash() values are signed 64-bit
    assert len(p._fingerprints) == REMEMBERED_OFFSETS
    last = 3 * REMEMBERED_OFFSETS - 1
    assert all(p.seen_before(o, -o * 7919) for o in range(last - REMEMBERED_OFFSETS + 1, last + 1))
    assert not p.seen_before(last - REMEMBERED_OFFSETS, -(last - REMEMBERED_OFFSETS) * 7919)
    assert not p.seen_before(last, -last * 7919 + 1)
    # Offsets with gaps (a compacted topic, transaction markers): still the recent ones.
    q = PartitionWindows("t", 0, size=10**9)
    for offset in range(0, 10 * REMEMBERED_OFFSETS, 3):
        q.skip(offset, fingerprint=offset)
    recent = [o for o in range(0, 10 * REMEMBERED_OFFSETS, 3) if o > 9 * REMEMBERED_OFFSETS]
    assert all(q.seen_before(o, o) for o in recent)
    assert not q.seen_before(0, 0) and not q.seen_before(3, 3)


def test_the_fingerprints_of_a_partition_take_128_kib() -> None:
    # Memory per busy partition (README, «Rendimiento»): a dict of Python ints here
    # took ~1.4 MB, so a consumer of 150 partitions passed 200 MB on this alone.
    import tracemalloc

    tracemalloc.start()
    try:
        partitions = [PartitionWindows("t", n, size=20) for n in range(10)]
        for p in partitions:
            for offset in range(20_000):
                p.skip(offset, fingerprint=hash(str(offset)))
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert used / len(partitions) < 140 * 1024


def test_a_partition_that_handled_nothing_holds_no_fingerprint_memory() -> None:
    p = PartitionWindows("t", 0, size=20)
    assert p._fingerprints is None and not p.seen_before(0, 0)
    p.skip(5, fingerprint=2**63 - 1)
    assert p.seen_before(5, 2**63 - 1) and not p.seen_before(5 + 8192, 2**63 - 1)
    p.reset()
    assert p._fingerprints is None


def _closed(*offsets: int) -> ClosedWindow:
    return ClosedWindow("t", 0, tuple(member(o) for o in offsets), 0.0, 0.0)


def test_recent_window_members_remember_the_end_of_each_window() -> None:
    recent = RecentWindowMembers(10)
    recent.remember(_closed(0, 1, 2))
    recent.remember(_closed(4, 5))
    assert [recent.window_end(f"id-{o}") for o in (0, 2, 3, 4, 5)] == [2, 2, None, 5, 5]


def test_recent_window_members_forget_whole_windows_the_oldest_first() -> None:
    recent = RecentWindowMembers(4)
    recent.remember(_closed(0, 1, 2))
    recent.remember(_closed(3, 4, 5))  # 6 ids > 4: the first window goes, all of it
    assert [recent.window_end(f"id-{o}") for o in range(6)] == [None, None, None, 5, 5, 5]
    assert len(recent) == 3


def test_a_window_remembered_again_is_not_forgotten_with_its_older_copy() -> None:
    recent = RecentWindowMembers(6)
    recent.remember(_closed(0, 1, 2))
    recent.remember(_closed(3, 4, 5))
    recent.remember(_closed(0, 1, 2))  # the first window closed again (rebuilt after a replay)
    recent.remember(_closed(6))  # 7 ids: the oldest copy goes, but its ids live on in the newer one
    assert [recent.window_end(f"id-{o}") for o in range(7)] == [2, 2, 2, None, None, None, 6]


def _one_run_with_random_failures(rng: random.Random, size: int) -> None:
    """A model of the commit path over two partitions: batches of random sizes, with
    the process dying (or losing a partition) between any two steps, KPI writes that
    keep the first document, and commits that may fail. The windows written must tile
    each partition's valid messages in blocks of exactly ``size``."""
    logs = {p: [rng.random() >= 0.1 for _ in range(rng.randint(0, 120))] for p in (0, 1)}  # True: valid
    committed = {0: 0, 1: 0}          # Kafka's committed offsets (durable)
    kpis: dict[tuple[int, int], tuple[int, ...]] = {}  # KPI collection: first write kept

    def life(die: bool) -> None:
        tracker = WindowTracker("t", size)
        in_closed_windows: dict[tuple[int, int], int] = {}  # ingest's RecentWindowMembers, per process
        position = dict(committed)    # where the fetch of each partition resumes
        while any(position[p] < len(logs[p]) for p in logs):
            p = rng.choice([q for q in logs if position[q] < len(logs[q])])
            batch = range(position[p], min(len(logs[p]), position[p] + rng.randint(1, 2 * size)))
            state, closed = tracker.partition(p), []
            for offset in batch:  # steps 1-4: every valid one is a member unless already in a closed window
                if not logs[p][offset] or (p, offset) in in_closed_windows:
                    state.skip(offset, counted_until=in_closed_windows.get((p, offset)))
                elif (window := state.add(member(offset), 0, 0)) is not None:
                    closed.append(window)
            position[p] = batch.stop
            if die and rng.random() < 0.1:
                return  # died before writing the KPIs
            for window in closed:  # step 5
                kpis.setdefault((p, window.first_offset), tuple(m.offset for m in window.members))
                in_closed_windows.update({(p, m.offset): window.last_offset for m in window.members})
            if die and rng.random() < 0.1:
                return  # died before the commit
            positions = tracker.positions_to_commit()  # step 6
            if not die or rng.random() < 0.8:
                committed.update(positions)
                tracker.mark_committed(positions)
            if die and rng.random() < 0.05:  # the partition is lost and handed back
                tracker.drop([p])
                position[p] = committed[p]

    for _ in range(rng.randint(0, 6)):
        life(die=True)
    life(die=False)

    for p, log in logs.items():
        valid = [offset for offset, ok in enumerate(log) if ok]
        expected = [tuple(valid[i:i + size]) for i in range(0, len(valid) - size + 1, size)]
        assert sorted(members for (q, _), members in kpis.items() if q == p) == expected
        assert all(first == members[0] for (q, first), members in kpis.items())


@pytest.mark.parametrize("size", [1, 3, 20])
def test_crashes_lost_partitions_and_failed_commits_anywhere_leave_windows_that_tile_each_partition(size: int) -> None:
    rng = random.Random(size)
    for _ in range(300):
        _one_run_with_random_failures(rng, size)
