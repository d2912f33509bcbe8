"""Everything that does IO: storage, transports, the trio and asyncio runtimes, the KV service."""
