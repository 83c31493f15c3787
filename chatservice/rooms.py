"""Rooms: named member sets that messages can be sent to.

A room is identified by a number and defined by its members; creating a room
with a member set that already has one reuses it.  The directory keeps the
indexes (by id, by member set, by user) and writes every change through the
store: the indexes change at once, and the Deferred of a change fires once the
store has it.  Each room's messages are kept in its own history channel, next to the
broadcasts' (:data:`BROADCAST_CHANNEL`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from twisted.internet import defer

from chatservice.store.interface import IChatStore

BROADCAST_CHANNEL = "broadcast"
"""The history channel of broadcasts (a room's is :attr:`Room.channel`)."""


@dataclass
class Room:
    """A room: its number and its current members."""

    room_id: int
    members: frozenset[str]

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

        A room changed here (or adopted from another node) while the store
        was being read is left as it is now: it is newer than the read.
        """
        touched: set[int] = set()
        self._touched = touched
        d = self.store.rooms()
        d.addCallback(self._reloaded, touched)
        return d.addBoth(self._tracked, touched)

    def _tracked(self, result: object, touched: set[int]) -> object:
        """The read of :meth:`reload` is over: changes are no longer tracked."""
        if self._touched is touched:
            self._touched = None
        return result

    def _reloaded(self, rooms: Iterable[tuple[int, frozenset[str]]], touched: set[int]) -> None:
        stored = {room_id: frozenset(members) for room_id, members in rooms}
        for room_id in (stored.keys() | self._by_id.keys()) - touched:
            room, members = self._by_id.get(room_id), stored.get(room_id)
            if room is None or room.members != members:
                self.adopt(room_id, members)

    def _load_rooms(self, rooms: Iterable[tuple[int, frozenset[str]]]) -> None:
        self._by_id.clear()
        self._by_members.clear()
        self._by_user.clear()
        for room_id, members in rooms:
            self._index(Room(room_id, frozenset(members)))

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
        return d.addCallback(lambda _: (room, True))

    def adopt(self, room_id: int, members: frozenset[str] | None) -> None:
        """Take another node's change of room ``room_id``: its members now, or ``None`` (removed)."""
        room = self._by_id.get(room_id)
        if room is not None:
            self._unindex(room)
        if members:
            self._index(Room(room_id, members))
            self._next_id = max(self._next_id, room_id + 1)

    def leave(self, room: Room, username: str) -> defer.Deferred[bool]:
        """Take ``username`` out of ``room`` now; fires, once stored, with whether the room is gone.

        A room left with no members is removed.  The store takes out only
        ``username`` and answers with the members left, which the directory
        then holds (others may have left on other nodes meanwhile; the room
        may be gone).  (A room whose remaining
        members equal another room's keeps its number; ``create`` then reuses
        the one with the lower number.)
        """
        self._unindex(room)
        room.members = room.members - {username}
        if room.members:
            self._index(room)
        d = self.store.leave_room(room.room_id, username)
        return d.addCallback(self._left, room)

    def _left(self, left: frozenset[str], room: Room) -> bool:
        """The store took a member out of ``room``: ``left`` are its members now
        (fewer than here if others left it on other nodes meanwhile)."""
        if left != room.members:
            self.adopt(room.room_id, left or None)
        return not left

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
