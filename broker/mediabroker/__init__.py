"""mediabroker: the daemon that owns capture devices and shares them through shared memory.

Code map, by where the code runs:

- ``daemon/``   the main process, one asyncio loop: the control socket (its
                own ZMTP server, zmtp) and its ops, sessions, tracks,
                quotas, shared streams, generators, result channels, access
                rules, the run dir, systemd.
                Never loads OpenCV, PortAudio or a capture driver
                (tests/broker/test_layout.py checks).
- ``sources/``  the daemon's side of capture processes: one source per
                device mode, its ring, its process, restart policy, leases.
- ``devices/``  finding devices (V4L2, PortAudio, video files, fakes); any
                probe that opens a device runs in a child process.
- ``capture/``  what runs inside a child that opens a device: the capture
                loop, the backend seam and its drivers (relay: a process's
                video track generator), the probe child.
- ``cli/``      the ``mediabroker`` command.
- ``recorder/`` what ``mediabroker record`` runs, a client of the daemon:
                the only importer of PyAV (lazily, for H.264).
- top level:    ``config`` (settings; ``config_values`` parses each value),
                ``constraints`` and ``selection``
                (pure: the spec's SelectSettings, which device and mode a
                track gets), ``errors`` (the daemon's own), ``filemodes``
                (modes and groups of the run dir and sockets), ``launcher``
                (start a daemon and wait for READY=1, for tests, demo, bench),
                ``install`` (with ``install_root``, ``install_sources`` and
                ``uninstall``: the systemd service install, standard library
                only, as systemd/install runs it before anything is installed).

The contract both sides share (wire protocol, ring layout, paths, the
errors a client sees) is in ``mediastream``, the client package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mediabroker.config import BrokerConfig
    from mediabroker.daemon.broker import Broker

__all__ = ["Broker", "BrokerConfig"]


def __getattr__(name: str) -> Any:
    # Lazy (PEP 562): capture processes and probe children import
    # mediabroker.capture.*, and must not pay for loading the daemon.
    if name == "Broker":
        from mediabroker.daemon.broker import Broker

        return Broker
    if name == "BrokerConfig":
        from mediabroker.config import BrokerConfig

        return BrokerConfig
    raise AttributeError(f"module 'mediabroker' has no attribute {name!r}")
