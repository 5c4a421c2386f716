"""Per-partition tumbling windows and the offsets that are safe to commit.

Pure bookkeeping, no I/O. The consumer feeds it, partition by partition and in
offset order, what happened to each record of a stored batch:

* a *member*: a valid message stored (or found already stored from this very
  offset) that counts in its partition's open window;
* a *skip*: an invalid message (dead-lettered), a duplicate of a message already
  stored from another offset, or a message read again that already counts in a
  window this consumer closed; it is done, but belongs to no window being built.

A window holds ``size`` members of one partition; when it fills, it closes and is
returned so its KPI document can be written. Windows never mix partitions: only then
is a window the same set of messages after a restart or a rebalance (SPEC §5). A
window being rebuilt after a crash may be given the size it was stored with
(:meth:`PartitionWindows.add`), so that it closes on the same message even if
``KPI_WINDOW_SIZE`` changed meanwhile.

Offsets of a partition only go forward, unless the partition's log was replaced (a
topic deleted and created again, a broker that lost its data). To tell a record
delivered twice from a new record at a recycled offset, each partition remembers a
fingerprint of the last :data:`REMEMBERED_OFFSETS` records it handled
(:meth:`PartitionWindows.seen_before`): a record identical to the one handled at that
offset is a duplicate delivery and is ignored; any other record at an old offset
means a new log, and the partition starts afresh (:meth:`PartitionWindows.reset`).

The commit position of a partition is the first offset of its open window, or, when
no window is open, the offset after the last record done. Everything before that
position is stored and belongs to a window whose KPI document is written before the
commit. After a crash the consumer re-reads from there and rebuilds the open window
with the same messages, so the same first offset and the same window id.

A closed window read again by the consumer that closed it (its commit failed, then
the partition was lost and handed back) is skipped message by message, and a batch
may end in its middle. No position is committed until its last offset has been
passed again (:meth:`PartitionWindows.skip`, ``counted_until``): a commit there
would make the next reader start a window inside one already written, and count
its messages twice.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

REMEMBERED_OFFSETS = 8192
_NO_OFFSET = -1


@dataclass(frozen=True, slots=True)
class WindowMember:
    """What a window keeps of one message: enough for KPIs and the audit trail."""

    offset: int
    message_id: str
    server_id: str
    timestamp: datetime
    cpu_percent: float
    memory_percent: float
    disk_io_mbps: float
    network_mbps: float
    error_count: int


@dataclass(frozen=True)
class ClosedWindow:
    """A full window, ready for its KPI document."""

    topic: str
    partition: int
    members: tuple[WindowMember, ...]
    received_at: float  # Clock.now(): first message received from Kafka
    stored_at: float    # Clock.now(): last message's raw write acknowledged

    @property
    def first_offset(self) -> int:
        return self.members[0].offset

    @property
    def last_offset(self) -> int:
        return self.members[-1].offset


@dataclass
class _OpenWindow:
    members: list[WindowMember] = field(default_factory=list)
    received_at: float = 0.0
    size: int = 0  # set when its first member arrives


class PartitionWindows:
    """The open window and the progress of one partition."""

    def __init__(self, topic: str, partition: int, size: int) -> None:
        if size < 1:
            raise ValueError("window size must be >= 1")
        self.topic = topic
        self.partition = partition
        self.size = size
        self._open = _OpenWindow()
        self.next_offset: int | None = None  # offset after the last record done
        # The fingerprint of the record handled at offset o sits in slot
        # o % REMEMBERED_OFFSETS, beside o itself: two flat arrays of 64-bit integers
        # (128 KiB, allocated at the partition's first record), where a dict of Python
        # ints took ~1.4 MB per busy partition.
        self._offsets: array[int] | None = None
        self._fingerprints: array[int] | None = None
        self._hold_until: int | None = None  # no commit before passing this offset (see skip)

    def already_done(self, offset: int) -> bool:
        """True for an offset at or before one this partition has already handled."""
        return self.next_offset is not None and offset < self.next_offset

    def seen_before(self, offset: int, fingerprint: int) -> bool:
        """True if this very record (same fingerprint) was handled at this offset."""
        if self._offsets is None or self._fingerprints is None:
            return False
        slot = offset % REMEMBERED_OFFSETS
        return self._offsets[slot] == offset and self._fingerprints[slot] == fingerprint

    def reset(self) -> int:
        """Start afresh (the partition's log was replaced). Returns the messages of
        the open window dropped."""
        dropped = self.open_count
        self._open = _OpenWindow()
        self.next_offset = None
        self._offsets = self._fingerprints = None
        self._hold_until = None
        return dropped

    def skip(self, offset: int, fingerprint: int = 0, counted_until: int | None = None) -> None:
        """A record done that no window being built takes. ``counted_until``: it already
        counts in a closed window whose last offset is that; nothing of the partition
        is committed until that offset is passed (see the module doc)."""
        if counted_until is not None and counted_until > offset:
            self._hold_until = max(counted_until, self._hold_until or 0)
        self._advance(offset, fingerprint)

    def add(self, member: WindowMember, received_at: float, stored_at: float,
            fingerprint: int = 0, size: int | None = None) -> ClosedWindow | None:
        """Add a member to the open window; the window it closes, if any. ``size``,
        for a member that opens a window: close this one at that size instead of
        ``self.size`` (a window rebuilt as it was stored)."""
        self._advance(member.offset, fingerprint)
        if not self._open.members:
            self._open.received_at = received_at
            self._open.size = size if size is not None and size >= 1 else self.size
        self._open.members.append(member)
        if len(self._open.members) < self._open.size:
            return None
        closed = ClosedWindow(self.topic, self.partition, tuple(self._open.members),
                              self._open.received_at, stored_at)
        self._open = _OpenWindow()
        return closed

    def _advance(self, offset: int, fingerprint: int) -> None:
        if self.already_done(offset):
            raise ValueError(f"offset {offset} of partition {self.partition} was already handled")
        self.next_offset = offset + 1
        if self._offsets is None or self._fingerprints is None:
            self._offsets = array("q", [_NO_OFFSET]) * REMEMBERED_OFFSETS
            self._fingerprints = array("q", [0]) * REMEMBERED_OFFSETS
        slot = offset % REMEMBERED_OFFSETS
        self._offsets[slot] = offset
        self._fingerprints[slot] = fingerprint
        if self._hold_until is not None and offset >= self._hold_until:
            self._hold_until = None

    @property
    def open_count(self) -> int:
        return len(self._open.members)

    def commit_position(self) -> int | None:
        """Where a commit of this partition may point now; None when nowhere new."""
        if self._hold_until is not None:
            return None
        if self._open.members:
            return self._open.members[0].offset
        return self.next_offset


@dataclass(frozen=True, eq=False)
class _RememberedWindow:
    last_offset: int
    ids: tuple[str, ...]


class RecentWindowMembers:
    """The messages of the last windows closed (bounded memory): message id -> the
    last offset of its window.

    Windows are forgotten whole, the oldest first, once more than ``capacity`` ids
    are remembered: a window half forgotten would be read again half as a rebuild
    and half as skips, and its first messages would open another window."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._windows: deque[_RememberedWindow] = deque()  # the oldest first
        self._by_id: dict[str, _RememberedWindow] = {}  # each id -> its latest window

    def remember(self, window: ClosedWindow) -> None:
        remembered = _RememberedWindow(window.last_offset, tuple(m.message_id for m in window.members))
        for message_id in remembered.ids:
            self._by_id[message_id] = remembered
        self._windows.append(remembered)
        while len(self._by_id) > self.capacity and len(self._windows) > 1:
            oldest = self._windows.popleft()
            for message_id in oldest.ids:
                if self._by_id.get(message_id) is oldest:  # not remembered again since
                    del self._by_id[message_id]

    def window_end(self, message_id: str) -> int | None:
        """The last offset of the closed window that counts this message, if remembered."""
        found = self._by_id.get(message_id)
        return None if found is None else found.last_offset

    def __len__(self) -> int:
        return len(self._by_id)


class WindowTracker:
    """All partitions a consumer owns: windows, progress and commit positions."""

    def __init__(self, topic: str, size: int) -> None:
        self.topic = topic
        self.size = size
        self._partitions: dict[int, PartitionWindows] = {}
        self._committed: dict[int, int] = {}

    def partition(self, partition: int) -> PartitionWindows:
        state = self._partitions.get(partition)
        if state is None:
            state = self._partitions[partition] = PartitionWindows(self.topic, partition, self.size)
        return state

    def drop(self, partitions: Iterable[int]) -> int:
        """Forget partitions (revoked, or their offsets reset). Returns the messages
        of open windows dropped; they will be read again from the committed offset."""
        dropped = 0
        for partition in partitions:
            state = self._partitions.pop(partition, None)
            self._committed.pop(partition, None)
            if state is not None:
                dropped += state.open_count
        return dropped

    def drop_all(self) -> int:
        return self.drop(list(self._partitions))

    def open_messages(self) -> int:
        return sum(state.open_count for state in self._partitions.values())

    def positions_to_commit(self) -> dict[int, int]:
        """Partitions whose commit position moved since the last successful commit."""
        positions = {}
        for partition, state in self._partitions.items():
            position = state.commit_position()
            if position is not None and self._committed.get(partition) != position:
                positions[partition] = position
        return positions

    def mark_committed(self, positions: dict[int, int]) -> None:
        for partition, position in positions.items():
            if partition in self._partitions:
                self._committed[partition] = position
