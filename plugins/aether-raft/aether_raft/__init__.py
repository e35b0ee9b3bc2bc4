"""Raft for Aether: a pure core, a durable log store, and the glue to the kernel.

Nothing here does work at import time. The ``raft`` transport provider (sockets and
the asyncio driver) builds on :class:`~aether_raft.core.RaftCore`.
"""
