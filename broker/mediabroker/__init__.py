"""mediabroker: the daemon that owns capture devices and shares them via shared memory."""

from __future__ import annotations

from .config import BrokerConfig
from .server import Broker

__all__ = ["Broker", "BrokerConfig"]
