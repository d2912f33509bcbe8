"""IO adapters for raftcore: storage, transports, and trio/asyncio runtimes.

Everything that does IO lives here; the engine (``raftcore``) never imports it.
"""
