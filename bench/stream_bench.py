"""What a framework layer costs on the transport's hot path: framed TCP on loopback.

``python -m bench.stream_bench`` prints one JSON line per implementation:

- ``asyncio``: asyncio streams (what ``AsyncioTcpTransport`` uses);
- ``trio``: trio streams (what ``TrioTcpTransport`` uses);
- ``anyio-asyncio`` / ``anyio-trio``: the same loops written once on anyio,
  run on each backend (the question: could one anyio transport replace the
  two, without costing speed? docs/design/anyio.md).

Each runs the two patterns a Raft transport has, with the project's framing
(4-byte length + payload, decoded with ``FrameDecoder``):

- ``frames_per_s``: one-way, one 64-byte frame per write (acknowledgements);
- ``rtt_p50_us`` / ``rtt_p99_us``: ping-pong, one frame each way (a write
  waiting for its acknowledgement).

anyio is a development dependency only; without it those two lines say
``"skipped"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from raftcore.adapters.transport.frames import FrameDecoder, encode_frame

FRAME = encode_frame(b"x" * 64)
ONE_WAY = 100_000
ROUND_TRIPS = 5_000
READ = 256 * 1024

Send = Callable[[bytes], Awaitable[None]]
Receive = Callable[[], Awaitable[bytes]]


async def _drain_frames(receive: Receive, count: int) -> None:
    decoder = FrameDecoder()
    got = 0
    while got < count:
        data = await receive()
        if not data:
            raise EOFError("closed early")
        got += len(decoder.feed(data))


async def _ping_pong(send: Send, receive: Receive) -> list[float]:
    """Round trips through an echo peer; each in microseconds."""
    decoder = FrameDecoder()
    out = []
    for _ in range(ROUND_TRIPS):
        start = time.perf_counter()
        await send(FRAME)
        while not decoder.feed(await receive()):
            pass
        out.append((time.perf_counter() - start) * 1e6)
    return out


async def _echo(send: Send, receive: Receive) -> None:
    decoder = FrameDecoder()
    while True:
        data = await receive()
        if not data:
            return
        for _ in decoder.feed(data):
            await send(FRAME)


def _result(impl: str, seconds: float, rtts: list[float]) -> dict[str, Any]:
    rtts.sort()
    return {
        "bench": "stream",
        "impl": impl,
        "frames_per_s": round(ONE_WAY / seconds),
        "rtt_p50_us": round(statistics.median(rtts), 1),
        "rtt_p99_us": round(rtts[int(len(rtts) * 0.99)], 1),
    }


# -- asyncio streams ---------------------------------------------------------------


async def _asyncio_main() -> dict[str, Any]:
    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _drain_frames(lambda: reader.read(READ), ONE_WAY)
        writer.close()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def send(b: bytes) -> None:
            writer.write(b)
            await writer.drain()

        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await _echo(send, lambda: reader.read(READ))
        writer.close()

    results: list[Any] = []
    for handler in (sink, echo):
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def send(b: bytes, w: asyncio.StreamWriter = writer) -> None:
            w.write(b)
            await w.drain()

        start = time.perf_counter()
        if handler is sink:
            for _ in range(ONE_WAY):
                await send(FRAME)
            await reader.read(1)  # the sink closes once it decoded them all
            results.append(time.perf_counter() - start)
        else:
            results.append(await _ping_pong(send, _reads(reader)))
        writer.close()
        server.close()
    seconds, rtts = results
    return _result("asyncio", seconds, rtts)


def _reads(reader: asyncio.StreamReader) -> Receive:
    return lambda: reader.read(READ)


# -- trio streams --------------------------------------------------------------------


async def _trio_main() -> dict[str, Any]:
    results: list[Any] = []
    for mode in ("sink", "echo"):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:

            async def serve(mode: str = mode, listener: Any = listeners[0]) -> None:
                stream = await listener.accept()
                async with stream:
                    if mode == "sink":
                        await _drain_frames(lambda: stream.receive_some(READ), ONE_WAY)
                    else:
                        await _echo(stream.send_all, lambda: stream.receive_some(READ))

            nursery.start_soon(serve)
            client = await trio.open_tcp_stream("127.0.0.1", port)
            async with client:
                start = time.perf_counter()
                if mode == "sink":
                    for _ in range(ONE_WAY):
                        await client.send_all(FRAME)
                    await client.receive_some(1)
                    results.append(time.perf_counter() - start)
                else:
                    results.append(await _ping_pong(client.send_all, client.receive_some))
        for lst in listeners:
            await lst.aclose()
    return _result("trio", results[0], results[1])


# -- anyio, on either backend -----------------------------------------------------------


async def _anyio_main(impl: str) -> dict[str, Any]:
    import anyio

    results: list[Any] = []
    for mode in ("sink", "echo"):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:

            async def serve(mode: str = mode, listener: Any = listener) -> None:
                async def handle(stream: Any) -> None:
                    async with stream:
                        if mode == "sink":
                            await _drain_frames(lambda: _receive(stream), ONE_WAY)
                        else:
                            await _echo(stream.send, lambda: _receive(stream))

                await listener.serve(handle)

            tg.start_soon(serve)
            client = await anyio.connect_tcp("127.0.0.1", port)
            async with client:
                start = time.perf_counter()
                if mode == "sink":
                    for _ in range(ONE_WAY):
                        await client.send(FRAME)
                    await _receive(client)
                    results.append(time.perf_counter() - start)
                else:
                    results.append(await _ping_pong(client.send, _receives(client)))
            tg.cancel_scope.cancel()
        await listener.aclose()
    return _result(impl, results[0], results[1])


def _receives(stream: Any) -> Receive:
    return lambda: _receive(stream)


async def _receive(stream: Any) -> bytes:
    import anyio

    try:
        data: bytes = await stream.receive(READ)
    except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
        return b""
    return data


def main() -> int:
    print(json.dumps(asyncio.run(_asyncio_main())), flush=True)
    print(json.dumps(trio.run(_trio_main)), flush=True)
    try:
        import anyio
    except ImportError:
        for impl in ("anyio-asyncio", "anyio-trio"):
            print(json.dumps({"bench": "stream", "impl": impl, "skipped": "anyio not installed"}))
        return 0
    for backend in ("asyncio", "trio"):
        impl = f"anyio-{backend}"
        print(json.dumps(anyio.run(_anyio_main, impl, backend=backend)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
