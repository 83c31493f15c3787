"""Rooms: named member sets that messages can be sent to.

A room is identified by a number and defined by its members; creating a room
with a member set that already has one reuses it.  The directory keeps the
indexes (by id, by member set, by user) and writes every change through the
store: the indexes change at once, and the Deferred of a change fires once the
store has it.  Each room's messages are kept in its own history channel, next to the
broadcasts' (:data:`BROADCAST_CHANNEL`).

Each room copy holds the store's version of it
(:class:`~chatservice.store.interface.StoredRoom`), and a change from
elsewhere (another node's announcement, a reading of the store) is taken
only if its version is newer: announcements that arrive out of order leave
the newest.  A removed room's last version is remembered too
(:data:`REMOVED_KEPT` of them), so that an older announcement arriving after
the removal does not bring the room back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from twisted.internet import defer

from chatservice.store.interface import IChatStore, StoredRoom

BROADCAST_CHANNEL = "broadcast"
"""The history channel of broadcasts (a room's is :attr:`Room.channel`)."""

REMOVED_KEPT = 10_000
"""How many removed rooms' last versions a directory remembers (the oldest are forgotten).

An announcement older than a room's removal can only arrive within moments
of it (two nodes publishing the changes they made at nearly the same time),
so only the last removals need to be remembered.
"""


@dataclass
class Room:
    """A room: its number and its current members."""

    room_id: int
    members: frozenset[str]
    version: int = 0
    """The store's version of the room (0: before it is stored, or stored before versions)."""

    @property
    def channel(self) -> str:
        """The history channel of this room's messages."""
        return f"room:{self.room_id}"


class RoomDirectory:
    """Every room, indexed by id, by member set and by member.

    :param store: where rooms are saved.
    """

    def __init__(self, store: IChatStore) -> None:
        self.store = store
        self._by_id: dict[int, Room] = {}
        self._by_members: dict[frozenset[str], Room] = {}
        self._by_user: dict[str, set[int]] = {}
        self._next_id = 1
        self._touched: set[int] | None = None
        """The rooms changed while :meth:`reload` reads them (``None``: not reading)."""
        self._removed: dict[int, int] = {}
        """The last version of each room removed (the last :data:`REMOVED_KEPT`, oldest first)."""

    def load(self) -> defer.Deferred[None]:
        """Read the rooms from the store; fires when done."""
        d = self.store.rooms()
        d.addCallback(self._load_rooms)
        # Never reuse the number of a removed room: its history is still kept.
        d.addCallback(lambda _: self.store.highest_room_id())
        d.addCallback(self._load_highest)
        return d

    def reload(self) -> defer.Deferred[None]:
        """Read the rooms from the store again and take the changes found; fires when done.

        A room read is taken if its version is newer than the copy's; a room
        the store no longer has is removed, unless it was created here (or
        announced) while the store was being read.
        """
        touched: set[int] = set()
        self._touched = touched
        d = self.store.rooms()
        d.addCallback(self._read_last_version)
        d.addCallback(self._reloaded, touched)
        return d.addBoth(self._tracked, touched)

    def _read_last_version(
        self, rooms: Iterable[StoredRoom]
    ) -> defer.Deferred[tuple[list[StoredRoom], int]]:
        """The rooms read, and the last version given once they were read."""
        rooms = list(rooms)
        return self.store.last_room_version().addCallback(lambda last: (rooms, last))

    def _tracked(self, result: object, touched: set[int]) -> object:
        """The read of :meth:`reload` is over: changes are no longer tracked."""
        if self._touched is touched:
            self._touched = None
        return result

    def _reloaded(self, read: tuple[list[StoredRoom], int], touched: set[int]) -> None:
        rooms, last = read
        stored = {room.room_id for room in rooms}
        for room in rooms:
            self.adopt(room.room_id, room.members, room.version)
        # Removed before the read ended: the removal's version is at most ``last``,
        # and every change of the room made before it lower.
        for room_id in self._by_id.keys() - stored - touched:
            self.adopt(room_id, None, last)

    def _load_rooms(self, rooms: Iterable[StoredRoom]) -> None:
        self._by_id.clear()
        self._by_members.clear()
        self._by_user.clear()
        self._removed.clear()
        for room in rooms:
            self._index(Room(room.room_id, frozenset(room.members), room.version))

    def _load_highest(self, highest: int) -> None:
        self._next_id = highest + 1

    def find(self, room_id: int) -> Room | None:
        """The room numbered ``room_id``, if it exists."""
        return self._by_id.get(room_id)

    def first_with(self, members: frozenset[str]) -> Room | None:
        """The room of exactly ``members`` that ``create`` returns (the lowest number)."""
        return self._by_members.get(members)

    def of(self, username: str) -> list[Room]:
        """The rooms ``username`` is in, by number."""
        return [self._by_id[i] for i in sorted(self._by_user.get(username, ()))]

    def create(self, members: frozenset[str]) -> defer.Deferred[tuple[Room, bool]]:
        """The room of exactly ``members``, and whether it was created just now.

        A new room is found at once; the Deferred fires once it is stored.
        """
        existing = self._by_members.get(members)
        if existing is not None:
            return defer.succeed((existing, False))
        next_room_id = getattr(self.store, "next_room_id", None)
        if next_room_id is None:
            room = Room(self._next_id, members)
            self._next_id += 1
            return self._save_new(room)
        # A store shared by several nodes numbers the rooms, so that two
        # nodes never give out the same number.
        return next_room_id().addCallback(lambda number: self._save_new(Room(number, members)))

    def _save_new(self, room: Room) -> defer.Deferred[tuple[Room, bool]]:
        self._next_id = max(self._next_id, room.room_id + 1)
        self._index(room)
        d = self.store.save_room(room.room_id, room.members)
        return d.addCallback(self._saved, room)

    def _saved(self, version: int, room: Room) -> tuple[Room, bool]:
        """``room`` is stored, as ``version``."""
        room.version = max(room.version, version)
        return room, True

    def adopt(self, room_id: int, members: frozenset[str] | None, version: int) -> bool:
        """Take a change of room ``room_id`` made elsewhere, if it is newer than the copy here.

        :param members: its members now, or ``None`` (removed).
        :param version: the store's version of that change.
        :return: whether it was taken (not: this copy is as new or newer).
        """
        room = self._by_id.get(room_id)
        held = room.version if room is not None else self._removed.get(room_id, -1)
        if version <= held:
            return False
        if room is not None and room.members == members:
            room.version = version  # (the same members: the indexes stay)
            return True
        if room is not None:
            self._unindex(room)
        if members:
            self._removed.pop(room_id, None)
            self._index(Room(room_id, members, version))
            self._next_id = max(self._next_id, room_id + 1)
        else:
            self._forget_removed(room_id, version)
        return True

    def _forget_removed(self, room_id: int, version: int) -> None:
        """Room ``room_id`` was removed as ``version``: remember that (and forget the oldest such)."""
        removed = self._removed
        removed.pop(room_id, None)
        removed[room_id] = version
        if len(removed) > REMOVED_KEPT:
            del removed[next(iter(removed))]
        if self._touched is not None:
            self._touched.add(room_id)

    def leave(self, room: Room, username: str) -> defer.Deferred[StoredRoom]:
        """Take ``username`` out of ``room`` now; fires, once stored, with the room as stored.

        A room left with no members is removed (the answer has no members).
        The store takes out only ``username`` and answers with the members
        left and the room's new version, which the directory then holds
        (others may have left on other nodes meanwhile; the room may be
        gone).  (A room whose remaining members equal another room's keeps
        its number; ``create`` then reuses the one with the lower number.)
        """
        self._unindex(room)
        room.members = room.members - {username}
        if room.members:
            self._index(room)
        else:
            # Gone here as of the version held: only a newer one brings it back.
            self._forget_removed(room.room_id, room.version)
        d = self.store.leave_room(room.room_id, username)
        return d.addCallback(self._left)

    def _left(self, stored: StoredRoom) -> StoredRoom:
        """The store took a member out of a room: hold what it answered, unless newer is held."""
        self.adopt(stored.room_id, stored.members or None, stored.version)
        return stored

    def _index(self, room: Room) -> None:
        if self._touched is not None:
            self._touched.add(room.room_id)
        self._by_id[room.room_id] = room
        holder = self._by_members.get(room.members)
        if holder is None or room.room_id < holder.room_id:
            self._by_members[room.members] = room
        for member in room.members:
            self._by_user.setdefault(member, set()).add(room.room_id)

    def _unindex(self, room: Room) -> None:
        if self._touched is not None:
            self._touched.add(room.room_id)
        del self._by_id[room.room_id]
        if self._by_members.get(room.members) is room:
            del self._by_members[room.members]
            same = [r for r in self._by_id.values() if r.members == room.members]
            if same:
                self._by_members[room.members] = min(same, key=lambda r: r.room_id)
        for member in room.members:
            rooms = self._by_user[member]
            rooms.discard(room.room_id)
            if not rooms:
                del self._by_user[member]
