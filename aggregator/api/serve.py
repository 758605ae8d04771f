"""Run the API under uvicorn, in one process or several.

With several worker processes, uvicorn binds the listening socket itself and its connections come
without TCP_NODELAY (uvicorn issue 3149): a response's headers and body then leave in two
segments, the body waiting on the client's delayed ACK, and every request after the first on a
keep-alive connection takes 40 ms more. The listening socket here has TCP_NODELAY set, which the
connections it accepts inherit (Linux).

Each worker process freezes the objects that making the app left (``gc.freeze``): the collector's
full passes then skip them instead of walking the whole app, its schemas and its SQLAlchemy
metadata each time (a pause of up to 100 ms, felt by the request that set it off).
"""

from __future__ import annotations

import gc
import socket

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from aggregator.api.app import create_app

APP = "aggregator.api.serve:serving_app"


def serving_app() -> FastAPI:
    """The app of a server process, its startup objects frozen out of the collector's sight."""
    app = create_app()
    gc.collect()
    gc.freeze()
    return app


class NoDelayConfig(uvicorn.Config):
    """uvicorn's configuration, with TCP_NODELAY on the listening socket it binds."""

    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


def serve(*, host: str, port: int, workers: int = 1, log_level: str = "info") -> None:
    """Serve the app on host:port with `workers` processes (one: in this process)."""
    config = NoDelayConfig(
        APP, factory=True, host=host, port=port, workers=workers, log_level=log_level
    )
    if workers == 1:
        uvicorn.Server(config).run()
        return
    Multiprocess(config, sockets=[config.bind_socket()]).run()
