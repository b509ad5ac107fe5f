"""``/metrics``: the daemon's own figures (`MediaDevices.broker_stats`) and the
gateway's, as Prometheus text (`mediabroker.metrics`).

Counters must never go down between scrapes, so an encoder that stops hands
its totals to the hub (`EncoderHub.retired`) and they are added to the next
encoder of the same source and size.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

from mediabroker.metrics import EncoderFigures, GatewayFigures, render_metrics

if TYPE_CHECKING:
    from mediabroker.web.app import Gateway
    from mediabroker.web.encoder import SharedEncoder

__all__ = ["encoder_figures", "gateway_figures", "merge", "metrics_text"]


async def metrics_text(gateway: Gateway) -> str:
    stats = await asyncio.to_thread(gateway.hub.devices.broker_stats)
    return render_metrics(stats, gateway_figures(gateway))


def gateway_figures(gateway: Gateway) -> GatewayFigures:
    totals = dict(gateway.hub.retired)
    for encoder in gateway.hub.encoders:
        figures = encoder_figures(encoder)
        key = encoder.key
        totals[key] = merge(totals[key], figures) if key in totals else figures
    return GatewayFigures(tuple(totals.values()))


def encoder_figures(encoder: SharedEncoder) -> EncoderFigures:
    key = encoder.key
    return EncoderFigures(
        device_id=key.source,
        width=key.width,
        height=key.height,
        frame_rate=key.frame_rate,
        viewers=encoder.fanout.viewers,
        joined=encoder.fanout.joined,
        skipped=encoder.fanout.skipped_total,
        frames=encoder.encoded_frames,
        encode_seconds=encoder.encode_seconds,
        keyframes=encoder.keyframes,
    )


def merge(retired: EncoderFigures, running: EncoderFigures) -> EncoderFigures:
    """A stopped encoder's totals plus a running one's; viewers are the running one's."""
    return dataclasses.replace(
        running,
        joined=retired.joined + running.joined,
        skipped=retired.skipped + running.skipped,
        frames=retired.frames + running.frames,
        encode_seconds=retired.encode_seconds + running.encode_seconds,
        keyframes=retired.keyframes + running.keyframes,
    )
