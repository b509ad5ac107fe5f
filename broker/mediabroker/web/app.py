"""The gateway's HTTP surface: the page, its JSON, WHEP, snapshots and metrics.

    GET  /                          the page (static/index.html)
    GET  /static/<file>             its script and style
    GET  /api/devices               devices, published streams, how access works
    GET  /api/sources               each running encoder: viewers, settings, stats
    GET  /api/events                Server-Sent Events: devicechange
    POST /whep/<id>[?width&height&frameRate]   WHEP: SDP offer in, 201 + answer out
    DELETE /whep/<id>/<session>     ends that viewer
    GET  /snapshot/<id>.jpg[?width&height]     the newest frame as JPEG
    GET  /metrics                   Prometheus text: the daemon's figures and ours

``<id>`` is a camera's deviceId or a published stream's name. Every request
passes `Access` first (`access_middleware`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

from aiohttp import web

from mediabroker.web.access import Access, AccessDenied, RequestFacts
from mediabroker.web.encoder import EncoderKey
from mediabroker.web.hub import EncoderHub
from mediabroker.web.whep import MAX_OFFER_BYTES, OfferError, TooManyViewers, WhepSessions
from mediastream import MediaStreamError, NotFoundError, OverconstrainedError

__all__ = ["Gateway", "create_app"]

log = logging.getLogger(__name__)

STATIC = files("mediabroker.web") / "static"
STATIC_FILES = {"index.html": "text/html", "page.js": "text/javascript", "page.css": "text/css"}
MAX_EVENT_STREAMS = 64  # open /api/events connections; each costs a queue and a task
EVENT_QUEUE = 16  # notices a slow event stream may lag behind before it is dropped
MAX_SIDE, MAX_RATE = 7680, 240.0


@dataclass
class Gateway:
    """What the handlers share: the daemon client's hub, the viewers, access."""

    hub: EncoderHub
    sessions: WhepSessions
    access: Access
    listen: str
    event_streams: set[asyncio.Queue[str]] = field(default_factory=set)

    def device_changed(self) -> None:
        """From the client's dispatch thread's notice, via the loop: tell every page."""
        for queue in list(self.event_streams):
            if queue.full():
                self.event_streams.discard(queue)  # its reader is gone or stuck
                queue.put_nowait("")  # wakes it to end
            else:
                queue.put_nowait("devicechange")


def create_app(gateway: Gateway) -> web.Application:
    app = web.Application(middlewares=[access_middleware], client_max_size=MAX_OFFER_BYTES)
    app["gateway"] = gateway
    app.router.add_get("/", _page)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/api/devices", _devices)
    app.router.add_get("/api/sources", _sources)
    app.router.add_get("/api/events", _events)
    app.router.add_post("/whep/{source}", _whep_offer)
    app.router.add_delete("/whep/{source}/{session}", _whep_end)
    app.router.add_route("OPTIONS", "/whep/{source}", _whep_options)
    app.router.add_get("/snapshot/{source}.jpg", _snapshot)
    app.router.add_get("/metrics", _metrics)
    return app


def _gateway(request: web.Request) -> Gateway:
    gateway: Gateway = request.app["gateway"]
    return gateway


@web.middleware
async def access_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        _gateway(request).access.check(_request_facts(request))
    except AccessDenied as exc:
        return web.Response(status=exc.status, text=f"{exc}\n")
    response: web.StreamResponse = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _request_facts(request: web.Request) -> RequestFacts:
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport else None
    local = transport.get_extra_info("sockname") if transport else None
    return RequestFacts(
        path=request.path,
        host=request.headers.get("Host", ""),
        authorization=request.headers.get("Authorization", ""),
        query_token=request.query.get("token", ""),
        fetch_site=request.headers.get("Sec-Fetch-Site", ""),
        peer=(str(peer[0]), int(peer[1])) if peer else ("", 0),
        local=(str(local[0]), int(local[1])) if local else ("", 0),
    )


# -- the page ------------------------------------------------------------------


async def _page(request: web.Request) -> web.Response:
    return _static_file("index.html")


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound(text=f"no such file: {name}\n")
    return _static_file(name)


def _static_file(name: str) -> web.Response:
    body = (STATIC / name).read_bytes()
    return web.Response(body=body, content_type=STATIC_FILES[name], charset="utf-8")


async def _devices(request: web.Request) -> web.Response:
    gateway = _gateway(request)
    listed = await gateway.hub.sources()
    access = {
        "listen": gateway.listen,
        "loopbackOnly": gateway.access.loopback_only,
        "tokenRequired": bool(gateway.access.token),
    }
    return web.json_response(
        {"devices": listed.devices, "streams": listed.streams, "access": access}
    )


async def _sources(request: web.Request) -> web.Response:
    gateway = _gateway(request)
    rows = []
    for encoder in gateway.hub.encoders:
        track = encoder.track
        settings = track.getSettings() if track is not None else {}
        rows.append(
            {
                "id": encoder.key.source,
                "width": settings.get("width"),
                "height": settings.get("height"),
                "frameRate": settings.get("frameRate"),
                "viewers": encoder.fanout.viewers,
                "encodedFrames": encoder.encoded_frames,
                "keyframes": encoder.keyframes,
                "encodeMs": 1000 * encoder.encode_seconds / max(encoder.encoded_frames, 1),
                "settings": settings,
                "stats": track.stats if track is not None else {},
                "muted": track.muted if track is not None else True,
            }
        )
    return web.json_response({"sources": rows})


async def _events(request: web.Request) -> web.StreamResponse:
    """devicechange notices as Server-Sent Events, until the page goes."""
    gateway = _gateway(request)
    if len(gateway.event_streams) >= MAX_EVENT_STREAMS:
        raise web.HTTPServiceUnavailable(text="too many open event streams\n")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    queue: asyncio.Queue[str] = asyncio.Queue(EVENT_QUEUE)
    gateway.event_streams.add(queue)
    try:
        await response.write(b": connected\n\n")
        while (event := await queue.get()) and queue in gateway.event_streams:
            await response.write(f"event: {event}\ndata: {{}}\n\n".encode())
    except (ConnectionError, asyncio.CancelledError):
        pass  # the page went away
    finally:
        gateway.event_streams.discard(queue)
    return response


# -- WHEP ----------------------------------------------------------------------


def _key(request: web.Request) -> EncoderKey:
    """The source and size a request asks for; 400 for a bad number."""
    query = request.query

    def number(name: str, high: float, kind: type[int] | type[float]) -> Any:
        if name not in query:
            return None
        try:
            value = kind(query[name])
        except ValueError:
            value = 0
        if not 0 < value <= high:
            raise web.HTTPBadRequest(text=f"{name} must be a number from 1 to {high:g}\n")
        return value

    return EncoderKey(
        request.match_info["source"],
        number("width", MAX_SIDE, int),
        number("height", MAX_SIDE, int),
        number("frameRate", MAX_RATE, float),
    )


async def _whep_offer(request: web.Request) -> web.Response:
    if request.content_type != "application/sdp":
        raise web.HTTPUnsupportedMediaType(text="WHEP offers are application/sdp\n")
    key = _key(request)
    offer = await request.text()
    remote = request.remote or "?"
    try:
        session, answer = await _gateway(request).sessions.start(key, offer, remote)
    except (OfferError, OverconstrainedError) as exc:
        raise web.HTTPBadRequest(text=f"{exc}\n") from None
    except NotFoundError as exc:
        raise web.HTTPNotFound(text=f"{exc}\n") from None
    except TooManyViewers as exc:
        raise web.HTTPServiceUnavailable(text=f"{exc}\n", headers={"Retry-After": "5"}) from None
    except MediaStreamError as exc:
        raise web.HTTPServiceUnavailable(text=f"{exc.name}: {exc}\n") from None
    location = f"/whep/{request.match_info['source']}/{session}"
    return web.Response(
        status=201,
        text=answer,
        content_type="application/sdp",
        headers={"Location": location, **_cors(request)},
    )


async def _whep_end(request: web.Request) -> web.Response:
    if not await _gateway(request).sessions.end(request.match_info["session"]):
        raise web.HTTPNotFound(text="no such WHEP session (it may have ended)\n")
    return web.Response(status=200, headers=_cors(request))


async def _whep_options(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={**_cors(request), "Accept-Post": "application/sdp"})


def _cors(request: web.Request) -> dict[str, str]:
    """With a token, WHEP players on other origins may read our answers: the
    token is what keeps strangers out. On loopback without one, none: any web
    page the user visits could otherwise watch the user's cameras."""
    if not _gateway(request).access.token:
        return {}
    return {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "POST, DELETE, OPTIONS",
        "Access-Control-Allow-Headers": "Authorization, Content-Type",
        "Access-Control-Expose-Headers": "Location",
    }


# -- snapshots and metrics -----------------------------------------------------


async def _snapshot(request: web.Request) -> web.Response:
    try:
        jpeg = await _gateway(request).hub.snapshot(_key(request))
    except NotFoundError as exc:
        raise web.HTTPNotFound(text=f"{exc}\n") from None
    except MediaStreamError as exc:
        raise web.HTTPServiceUnavailable(text=f"{exc.name}: {exc}\n") from None
    return web.Response(body=jpeg, content_type="image/jpeg")


async def _metrics(request: web.Request) -> web.Response:
    from mediabroker.web.figures import metrics_text

    text = await metrics_text(_gateway(request))
    return web.Response(
        body=text.encode(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    )
