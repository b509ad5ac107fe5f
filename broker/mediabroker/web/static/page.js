// The gateway's page: every camera and published stream with a live WebRTC
// preview (WHEP, RFC 9725), its settings and statistics, and the microphones.
// Plain script, no build step: the gateway serves it as it is.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const REFRESH_MS = 1000; // settings and statistics
const RETRY_MS = [1000, 2000, 4000, 8000, 16000, 30000]; // reconnect backoff
const GATHER_MS = 5000; // ICE gathering; non-trickle WHEP needs it complete
const cards = new Map(); // WHEP id (deviceId or stream name) -> Card

// -- requests: every one carries the token, if the page was given one -----------

function authorized(options = {}) {
  const headers = new Headers(options.headers);
  if (TOKEN) headers.set("Authorization", `Bearer ${TOKEN}`);
  return { ...options, headers };
}

function withToken(path) {
  // For URLs the page cannot set headers on: EventSource, links.
  if (!TOKEN) return path;
  return `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(TOKEN)}`;
}

async function getJSON(path) {
  const response = await fetch(path, authorized());
  if (!response.ok) {
    throw new Error(`${path}: ${response.status} ${(await response.text()).trim()}`);
  }
  return response.json();
}

function iceGathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, GATHER_MS); // offer what was gathered rather than nothing
  });
}

// -- one camera or stream ---------------------------------------------------------

class Card {
  constructor(id, label, kind) {
    this.id = id;
    this.attempt = 0;
    this.pc = null;
    this.resource = null; // the WHEP session's URL, to DELETE
    this.timer = null;
    this.element = document.getElementById("card").content.firstElementChild.cloneNode(true);
    this.element.dataset.id = id;
    this.element.dataset.kind = kind;
    this.video = this.element.querySelector("video");
    this.status = this.element.querySelector(".status");
    this.figures = this.element.querySelector(".figures");
    this.summary = this.element.querySelector(".summary");
    this.element.querySelector(".snapshot").href =
      withToken(`snapshot/${encodeURIComponent(id)}.jpg`);
    this.setLabel(label, kind);
  }

  setLabel(label, kind) {
    const what = kind === "stream" ? "published stream" : "camera";
    this.element.querySelector(".label").textContent = label;
    this.element.querySelector(".kind").textContent = what;
    this.video.setAttribute("aria-label", `Live preview of ${what} ${label}`);
  }

  say(text, failed = false) {
    this.status.textContent = text;
    this.status.classList.toggle("failed", failed);
  }

  async connect() {
    this.disconnect();
    const pc = new RTCPeerConnection();
    this.pc = pc;
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addEventListener("track", (event) => {
      this.video.srcObject = new MediaStream([event.track]);
    });
    pc.addEventListener("iceconnectionstatechange", () => this.onState(pc));
    pc.addEventListener("connectionstatechange", () => this.onState(pc));
    this.say("Connecting…");
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await iceGathered(pc);
      const response = await fetch(`whep/${encodeURIComponent(this.id)}`, authorized({
        method: "POST",
        headers: { "Content-Type": "application/sdp" },
        body: pc.localDescription.sdp,
      }));
      const text = await response.text();
      if (!response.ok) throw new Error(`the gateway said ${response.status}: ${text.trim()}`);
      const resource = new URL(response.headers.get("Location"), location.href).href;
      if (pc !== this.pc) return endSession(resource); // stopped while we asked
      this.resource = resource;
      await pc.setRemoteDescription({ type: "answer", sdp: text });
    } catch (error) {
      if (pc === this.pc) this.retry(error.message);
    }
  }

  onState(pc) {
    if (pc !== this.pc) return;
    const state = pc.connectionState, ice = pc.iceConnectionState;
    if (state === "failed" || ice === "failed") {
      this.retry("The connection failed");
    } else if (state === "connected") {
      this.attempt = 0;
      this.say("Live");
    } else if (state === "disconnected" || ice === "disconnected") {
      // Transient by the spec: ICE may recover by itself, so wait for "failed".
      this.say("Connection interrupted, waiting for it to recover…");
    }
  }

  retry(reason) {
    this.disconnect();
    const delay = RETRY_MS[Math.min(this.attempt, RETRY_MS.length - 1)];
    this.attempt += 1;
    this.say(`${reason}. Trying again in ${delay / 1000} s.`, true);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  disconnect() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.pc) this.pc.close();
    this.pc = null;
    if (this.resource) endSession(this.resource);
    this.resource = null;
    this.video.srcObject = null;
  }

  remove() {
    this.disconnect();
    this.element.remove();
  }

  async showFigures(source) {
    const received = await this.receivedStats();
    const parts = [];
    if (source) {
      parts.push(`${source.width}×${source.height}, ${round(source.frameRate)} fps`);
      parts.push(`${source.viewers} viewer${source.viewers === 1 ? "" : "s"}`);
      parts.push(`encoding ${round(source.encodeMs)} ms a frame`);
      if (source.muted) parts.push("muted (no frames from the source)");
    }
    if (received) parts.push(`received ${round(received.framesPerSecond ?? 0)} fps`);
    this.summary.textContent = parts.join(" · ");
    const rows = [];
    if (source) rows.push(["encodedFrames", source.encodedFrames]);
    if (source?.keyframes !== undefined) rows.push(["keyframes", source.keyframes]);
    if (received) {
      rows.push(["received.framesDecoded", received.framesDecoded ?? 0]);
      rows.push(["received.framesDropped", received.framesDropped ?? 0]);
      const emitted = received.jitterBufferEmittedCount;
      const jitterMs = emitted ? (1000 * received.jitterBufferDelay) / emitted : 0;
      rows.push(["received.jitterBufferMs", round(jitterMs)]);
    }
    for (const [group, values] of [["settings", source?.settings], ["stats", source?.stats]]) {
      for (const [name, value] of Object.entries(values || {})) {
        const text = typeof value === "object" ? JSON.stringify(value) : round(value);
        rows.push([`${group}.${name}`, text]);
      }
    }
    this.figures.replaceChildren(...rows.flatMap(([name, value]) => [
      Object.assign(document.createElement("dt"), { textContent: name }),
      Object.assign(document.createElement("dd"), { textContent: String(value) }),
    ]));
  }

  async receivedStats() {
    if (!this.pc) return null;
    for (const report of (await this.pc.getStats()).values()) {
      if (report.type === "inbound-rtp" && report.kind === "video") return report;
    }
    return null;
  }
}

function endSession(resource) {
  // keepalive: the request outlives the page when it is closing.
  fetch(resource, authorized({ method: "DELETE", keepalive: true })).catch(() => {});
}

function round(value) {
  return typeof value === "number" && !Number.isInteger(value) ? value.toFixed(1) : value;
}

// -- the lists ----------------------------------------------------------------------

function showAccess(access) {
  const banner = document.getElementById("access");
  banner.classList.toggle("token", access.tokenRequired);
  banner.classList.remove("error");
  if (access.tokenRequired) {
    banner.textContent = `The gateway listens on ${access.listen} and a token is required: ` +
      "share the URL with ?token=… (this page's address) only with whoever may watch.";
  } else if (access.loopbackOnly) {
    banner.textContent = "Only this machine can open this page " +
      `(the gateway listens on ${access.listen}, for its own user only).`;
  } else {
    banner.textContent = `The gateway listens on ${access.listen} with no token.`;
  }
}

function showError(error) {
  const banner = document.getElementById("access");
  banner.classList.add("error");
  banner.textContent = /: 401 /.test(error.message)
    ? "A token is required: open this page with ?token=… as its owner gave it."
    : `Cannot reach the gateway: ${error.message}`;
}

function showVideos(listing) {
  const wanted = new Map([
    ...listing.devices.filter((d) => d.kind === "videoinput")
      .map((d) => [d.deviceId, { label: d.label || "Camera", kind: "camera" }]),
    ...listing.streams.map((s) => [s.name, { label: s.label || s.name, kind: "stream" }]),
  ]);
  for (const [id, card] of cards) {
    if (!wanted.has(id)) {
      card.remove();
      cards.delete(id);
    }
  }
  const grid = document.getElementById("videos");
  for (const [id, { label, kind }] of wanted) {
    if (cards.has(id)) {
      cards.get(id).setLabel(label, kind); // a running preview is left alone
      continue;
    }
    const card = new Card(id, label, kind);
    cards.set(id, card);
    grid.append(card.element);
    card.connect();
  }
  document.getElementById("no-video").hidden = wanted.size > 0;
}

function showMicrophones(devices) {
  const microphones = devices.filter((d) => d.kind === "audioinput");
  document.getElementById("audio").replaceChildren(...microphones.map((d) =>
    Object.assign(document.createElement("li"), { textContent: d.label || "Microphone" })));
  document.getElementById("no-audio").hidden = microphones.length > 0;
}

async function refreshDevices() {
  try {
    const listing = await getJSON("api/devices");
    showAccess(listing.access);
    showVideos(listing);
    showMicrophones(listing.devices);
  } catch (error) {
    showError(error);
  }
}

async function refreshFigures() {
  if (document.hidden || cards.size === 0) return;
  try {
    const { sources } = await getJSON("api/sources");
    for (const [id, card] of cards) card.showFigures(sources.find((s) => s.id === id));
  } catch (error) {
    showError(error);
  }
}

function start() {
  // Each (re)connection of the event stream re-reads the list: changes made
  // while it was down are not lost.
  let lost = false;
  const events = new EventSource(withToken("api/events"));
  events.addEventListener("error", () => { lost = true; });
  events.addEventListener("open", () => { if (lost) refreshDevices(); lost = false; });
  events.addEventListener("devicechange", refreshDevices);
  refreshDevices();
  setInterval(refreshFigures, REFRESH_MS);
  // Leaving ends each WHEP session at once, rather than when ICE times out.
  addEventListener("pagehide", () => cards.forEach((card) => card.disconnect()));
  addEventListener("pageshow", (event) => {
    if (event.persisted) cards.forEach((card) => card.connect()); // back from the cache
  });
}

start();
