"""Run the stand-in as a process: ``python -m tests.harness.standin --port 8765``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from . import (
    BROKE_API_KEY,
    DEFAULT_API_KEY,
    ENTERPRISE_API_KEY,
    FREE_PLAN_API_KEY,
    StandinServer,
)


async def _serve(host: str, port: int) -> None:
    server = StandinServer(port=port, host=host)
    await server.start()
    print(f"TTS.ai stand-in: {server.base_url}", flush=True)
    print(f"API key (pro, demo): {DEFAULT_API_KEY}", flush=True)
    print(
        f"Other keys: {ENTERPRISE_API_KEY} (enterprise), {FREE_PLAN_API_KEY} "
        f"(free plan: 403), {BROKE_API_KEY} (no credits: 402)",
        flush=True,
    )
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    try:
        await stopped.wait()
    finally:
        await server.stop()


def main() -> None:
    """Parse the command line and serve until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(description="TTS.ai API stand-in server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
