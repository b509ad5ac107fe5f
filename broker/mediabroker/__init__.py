"""mediabroker: the daemon that owns capture devices and shares them via shared memory."""

from __future__ import annotations

from mediabroker.config import BrokerConfig
from mediabroker.daemon.broker import Broker

__all__ = ["Broker", "BrokerConfig"]
