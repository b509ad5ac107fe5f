// The fake camera's clock code (mediabroker.capture.fake), read in a browser.
//
// A test injects this into the page (Playwright's add_script_tag), so the
// page itself carries no test code. `clockCode.watch(video)` draws each
// presented frame (requestVideoFrameCallback) onto a small canvas, reads the
// code and records Date.now() minus it: the capture-to-display latency, as
// the daemon and the browser share this machine's clock. The layout must
// match capture/fake.py: CODE_COLS x CODE_ROWS cells over the top CODE_BAND
// of the frame, four reference cells, 32 bits, one odd parity bit a byte.
"use strict";

window.clockCode = (() => {
  const COLS = 8, ROWS = 5, BAND = 0.5, BITS = 32;
  const WHITE = [0, COLS * ROWS - 1], BLACK = [COLS - 1, COLS * (ROWS - 1)];
  const REFERENCE = new Set([...WHITE, ...BLACK]);
  const DATA = [...Array(COLS * ROWS).keys()].filter((i) => !REFERENCE.has(i));
  const MIN_CONTRAST = 96, MARGIN = 0.25;
  const CANVAS_WIDTH = 160; // plenty for cells of a 20th of the width; cheap to read back

  // The mean grey level of the middle half of each cell, from RGBA pixels.
  function levels(pixels, width, height) {
    const out = [];
    for (let index = 0; index < COLS * ROWS; index++) {
      const row = Math.floor(index / COLS), col = index % COLS;
      const y0 = (height * BAND * row) / ROWS, y1 = (height * BAND * (row + 1)) / ROWS;
      const x0 = (width * col) / COLS, x1 = (width * (col + 1)) / COLS;
      const top = Math.round(y0 + (y1 - y0) / 4), left = Math.round(x0 + (x1 - x0) / 4);
      const bottom = Math.max(Math.round(y1 - (y1 - y0) / 4), top + 1);
      const right = Math.max(Math.round(x1 - (x1 - x0) / 4), left + 1);
      let sum = 0;
      for (let y = top; y < bottom; y++) {
        for (let x = left; x < right; x++) {
          const p = (y * width + x) * 4;
          sum += pixels[p] + pixels[p + 1] + pixels[p + 2];
        }
      }
      out.push(sum / (3 * (bottom - top) * (right - left)));
    }
    return out;
  }

  function parityOk(bits) {
    for (let b = 0; b < BITS / 8; b++) {
      const ones = bits.slice(b * 8, b * 8 + 8).reduce((a, v) => a + v, 0);
      if (bits[BITS + b] !== 1 - (ones % 2)) return false;
    }
    return true;
  }

  // The 32-bit code in RGBA ``pixels`` of width x height, or null.
  function decode(pixels, width, height) {
    const level = levels(pixels, width, height);
    const white = Math.min(...WHITE.map((i) => level[i]));
    const black = Math.max(...BLACK.map((i) => level[i]));
    if (white - black < MIN_CONTRAST) return null;
    const threshold = (white + black) / 2, margin = (white - black) * MARGIN;
    if (DATA.some((i) => Math.abs(level[i] - threshold) < margin)) return null;
    const bits = DATA.map((i) => (level[i] > threshold ? 1 : 0));
    if (!parityOk(bits)) return null;
    return bits.slice(0, BITS).reduce((value, bit) => value * 2 + bit, 0);
  }

  // Milliseconds since the code was painted, unwrapped against Date.now().
  function ageMs(code, now = Date.now()) {
    const wrap = 2 ** BITS;
    const age = (((now - code) % wrap) + wrap) % wrap;
    return age >= wrap / 2 ? age - wrap : age;
  }

  // Follow ``video``'s presented frames; returns the record the test reads.
  function watch(video) {
    const record = { callbacks: 0, presented: 0, decoded: 0, unreadable: 0, ages: [] };
    const canvas = document.createElement("canvas");
    const context = canvas.getContext("2d", { willReadFrequently: true });
    let first = null;
    function onFrame(now, metadata) {
      const at = Date.now();
      canvas.width = CANVAS_WIDTH;
      canvas.height = Math.max(1, Math.round((CANVAS_WIDTH * metadata.height) / metadata.width));
      context.drawImage(video, 0, 0, canvas.width, canvas.height);
      const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
      const code = decode(pixels, canvas.width, canvas.height);
      first ??= metadata.presentedFrames - 1;
      record.callbacks += 1;
      record.presented = metadata.presentedFrames - first; // callbacks can skip frames
      if (code === null) record.unreadable += 1;
      else {
        record.decoded += 1;
        record.ages.push(ageMs(code, at));
      }
      video.requestVideoFrameCallback(onFrame);
    }
    video.requestVideoFrameCallback(onFrame);
    return record;
  }

  return { decode, ageMs, watch };
})();
