"""The daemon's HTTP/JSON API: the services, and the routes of each resource over them."""

from __future__ import annotations

import asyncio
import warnings

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic.warnings import UnsupportedFieldAttributeWarning

from banger import __version__
from banger.api.models import build_all
from banger.daemon.hints import invalid_request, with_hint
from banger.daemon.routes_forwards import forward_routes
from banger.daemon.routes_guest import guest_routes
from banger.daemon.routes_images import image_routes
from banger.daemon.routes_kernels import kernel_routes
from banger.daemon.routes_names import name_routes
from banger.daemon.routes_operations import operation_routes
from banger.daemon.routes_snapshots import snapshot_routes
from banger.daemon.routes_system import system_routes
from banger.daemon.routes_vms import vm_routes
from banger.daemon.routes_workspaces import workspace_routes
from banger.daemon.services import Services
from banger.errors import BangerError


def create_app(services: Services, shutdown: asyncio.Event) -> FastAPI:
    build_all()
    # FastAPI names a body parameter by an alias on a model pydantic built
    # lazily (defer_build, for the CLI's start-up); the alias means nothing for
    # a single body, and pydantic says so once per route.
    warnings.filterwarnings("ignore", "The 'alias' attribute", UnsupportedFieldAttributeWarning)
    app = FastAPI(
        title="bangerd",
        version=__version__,
        description="banger's daemon: disposable microVMs over HTTP/JSON on a unix socket.",
    )
    # The services are built whole before this (services.py); each route module
    # gets only those it needs.
    s = services
    app.include_router(system_routes(s, shutdown))
    app.include_router(
        vm_routes(s.store, s.vms, s.inspector, s.vmm, s.ops, s.ssh_config, s.snapshots, s.warm)
    )
    app.include_router(guest_routes(s.vms, s.agents, s.ops))
    app.include_router(forward_routes(s.vms, s.forwards))
    app.include_router(workspace_routes(s.store, s.ssh_config))
    app.include_router(snapshot_routes(s.store, s.snapshots, s.ops, s.ssh_config))
    app.include_router(image_routes(s.store, s.images, s.ops))
    app.include_router(kernel_routes(s.store, s.kernels, s.ops))
    app.include_router(operation_routes(s.store, s.ops))
    app.include_router(name_routes(s.store))
    add_error_handlers(app)
    return app


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BangerError)
    async def banger_error(_: Request, exc: BangerError) -> JSONResponse:
        return JSONResponse(with_hint(exc).to_dict(), status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        body = invalid_request(exc.errors())
        return JSONResponse(body.model_dump(exclude_none=True), status_code=400)
