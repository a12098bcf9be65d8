"""bangerd's app, or a part of it, served by uvicorn on the settings' socket in a thread.

The test daemons (guest_daemon.py, sdk_daemon.py) build their apps
differently; serving one, waiting until it answers and stopping it is the
same for both and lives here.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

import uvicorn
from fastapi import FastAPI

from banger.api.client import Client
from banger.config import Settings

Closing = Callable[[], Awaitable[None]]


class ServedApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._server: uvicorn.Server | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._error: BaseException | None = None

    async def build(self) -> tuple[FastAPI, Closing]:
        """The app to serve, on the serving loop, and what to close when it ends."""
        raise NotImplementedError

    def serve(self) -> None:
        """Serve in the background; return once the daemon answers."""
        self._thread.start()
        # Answering, not only bound: uvicorn binds the socket before it listens.
        client = Client(self.settings)
        deadline = time.monotonic() + 10
        while not client.ping():
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the test daemon did not answer on {self.settings.socket}: {self._error}"
                )
            time.sleep(0.01)

    def shutdown(self) -> None:
        """Stop serving; an error the serving thread met is raised here."""
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(10)

    def raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc

    async def _main(self) -> None:
        app, close = await self.build()
        config = uvicorn.Config(
            app, uds=str(self.settings.socket), log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        try:
            await self._server.serve()
        finally:
            await close()
