"""Where the chat state keeps what must outlive a session.

:class:`~chatservice.store.interface.IChatStore` is the interface the state
uses (asynchronous: every call returns a Deferred);
:class:`~chatservice.store.interface.ILocalChatStore` is the synchronous one
of a store on this machine: :class:`~chatservice.store.memory.MemoryStore`
keeps everything in memory, :class:`~chatservice.store.sqlite.SQLiteStore` in
an SQLite file, and :class:`~chatservice.store.local.LocalStore` puts either
behind :class:`~chatservice.store.interface.IChatStore`.
"""
