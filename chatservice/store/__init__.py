"""Where the chat state keeps what must outlive a session.

:class:`~chatservice.store.interface.IChatStore` is the interface;
:class:`~chatservice.store.memory.MemoryStore` keeps everything in memory.
"""
