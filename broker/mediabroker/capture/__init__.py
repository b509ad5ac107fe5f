"""Everything that runs in a child process that opens devices.

Two kinds of children: a capture process (`main.capture_main`, one per open
source, spawned and supervised by `mediabroker.sources`) drives one backend
and writes its frames into a ring; a probe child (`probe`, run by
`mediabroker.devices.prober` with a timeout) opens a device just long enough
to say what it offers. OpenCV and PortAudio load only here, in processes
the daemon can kill.

- `backend`: the seam (`VideoBackend`, `AudioBackend`, `BackendSpec`, `Clock`);
- `registry`: opens the backend a `BackendSpec` names, importing its driver then;
- `main`: the capture process's loop and its status messages;
- drivers: `fake`, `derived`, `files` and `v4l2` (with `opencv`, their shared
  frame handling), `portaudio`;
- `probe`: the probe child.

The daemon's main process may import `backend`, `registry` and `main`
(which load no driver), never the drivers or `probe`.
"""
