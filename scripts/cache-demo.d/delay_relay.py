#!/usr/bin/python3
"""A TCP relay on loopback that delays every byte coming back from the upstream by a fixed time,
so that a Redis GET behaves like the slow query of seed 000 (an expensive recomputation).

    delay_relay.py LISTEN_PORT UPSTREAM_PORT DELAY_MS

One upstream connection per client connection; order is kept (a constant delay per chunk).
Started and stopped by pid by scripts/stampede-demo."""
import asyncio
import sys

HOST = "127.0.0.1"


async def pump(src, dst, delay):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def sender():
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                dst.close()
                return
            dst.write(data)
            await dst.drain()

    task = asyncio.create_task(sender())
    try:
        while True:
            data = await src.read(1 << 16)
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                break
        await task
    except (ConnectionError, OSError):
        task.cancel()
        dst.close()


async def handle(reader, writer, up_port, delay):
    try:
        ur, uw = await asyncio.open_connection(HOST, up_port)
    except OSError:
        writer.close()
        return
    await asyncio.gather(pump(reader, uw, 0.0), pump(ur, writer, delay), return_exceptions=True)


async def main():
    port, up_port, delay_ms = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    server = await asyncio.start_server(lambda r, w: handle(r, w, up_port, delay_ms / 1000.0),
                                        HOST, port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
