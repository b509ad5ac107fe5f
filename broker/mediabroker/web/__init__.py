"""``mediabroker web``: cameras beyond the process, on engines people already run.

A process of its own, an ordinary client of the daemon, so that aiortc,
PyAV and aiohttp (the ``web`` extra) never load into the daemon or the
``mediastream`` client, and a crash in them takes down a gateway, not the
camera owner.

    server   the process: a MediaDevices, an aiohttp site, signals
    app      the HTTP routes: page, JSON, WHEP, snapshots, metrics
    access   loopback + our uid by default, a token beyond
    whep     one peer connection per viewer, packets from a shared encoder
    hub      which sources exist; one encoder per source and size
    encoder  a track in, H.264 packets out to a fanout, across mutes and restarts
    fanout   packets to viewers: no queue grows, a lagging viewer skips to a keyframe
    h264     libx264 settings for live WebRTC
    figures  /metrics: the daemon's stats and the gateway's own, as Prometheus text
    static/  the page (plain HTML, CSS and JavaScript)
"""
