// The latent plane of the explorer page: two axes in z-space (unit vectors), the test images' encoder means
// projected on them as dots, the prior's 1 and 2 sigma circles, and drawn over them the cursor at z, the picked dot
// and the path; and the way back from a point of the plane to z. explorer_page.js makes one with makePlane.
//
// The plane runs from -extent to extent on both axes (extent: the prior's 2 sigma, or as far as all but the
// farthest 0.5% of the dots reach), drawn on two canvases of size x size CSS pixels: the dots (drawn when the axes
// change) and the overlay above them (drawn every frame, and the one that takes the pointer).

"use strict";

const PICK_RADIUS = 8; // CSS pixels: how near a click must come to a dot to pick it

// options: dots and overlay (the two canvases), size (their CSS size), latent (L), count (N dots), meanOf(i) (dot
// i's encoder mean, L numbers), labels (N classes), principal ({directions (2, L), explained (2,)}), colourOf(label).
function makePlane(options) {
  const {dots, overlay, size, latent: L, count: N, meanOf, labels, principal, colourOf} = options;

  // the axes to choose from: the means' two principal directions (with more than 2 units), then every unit
  const axes = [];
  const unit = (k) => Array.from({length: L}, (_, j) => (j === k ? 1 : 0));
  if (L > 2) {
    principal.directions.forEach((direction, k) => axes.push({ // named with its share of the means' variance
      name: `PC${k + 1} (${Math.round(100 * principal.explained[k])}%)`, short: `PC${k + 1}`, vector: direction}));
  }
  for (let k = 0; k < L; k++) axes.push({name: `z${k + 1}`, short: `z${k + 1}`, vector: unit(k)});
  if (L === 1) axes.push({name: "(nothing: the latent has one unit)", short: "", vector: [0]});
  let axisX = 0, axisY = 1;

  const dot = (a, b) => a.reduce((sum, ak, k) => sum + ak * b[k], 0);
  const project = (z) => [dot(z, axes[axisX].vector), dot(z, axes[axisY].vector)];

  // z moved to the point (u, v) of the plane, changed only along the two axes: z + A G^-1 (t - A^T z), with
  // A = [a b], G = A^T A and t = (u, v). Then z.a = u and z.b = v; the rest of z stays (the sliders show it).
  function moved(z, u, v) {
    const a = axes[axisX].vector, b = axes[axisY].vector;
    const du = u - dot(z, a), dv = v - dot(z, b);
    const aa = dot(a, a), ab = dot(a, b), bb = dot(b, b);
    let alpha, beta;
    if (bb === 0) { // one latent unit: a line, not a plane
      [alpha, beta] = [du / aa, 0];
    } else {
      const det = aa * bb - ab * ab;
      [alpha, beta] = [(bb * du - ab * dv) / det, (aa * dv - ab * du) / det];
    }
    return z.map((zk, k) => zk + alpha * a[k] + beta * b[k]);
  }

  let extent = 3;
  const dotsX = new Float32Array(N), dotsY = new Float32Array(N); // where the dots are, in CSS pixels
  const toScreen = (u, v) => [((u + extent) / (2 * extent)) * size, ((extent - v) / (2 * extent)) * size];
  const fromScreen = (x, y) => [(x / size) * 2 * extent - extent, extent - (y / size) * 2 * extent];

  function layOutDots() {
    const planeU = new Float64Array(N), planeV = new Float64Array(N), reach = [];
    for (let i = 0; i < N; i++) {
      const [u, v] = project(meanOf(i));
      const jitter = L === 1 ? ((i * 0.618034) % 1 - 0.5) * 0.6 : 0; // one unit: spread the dots a little
      [planeU[i], planeV[i]] = [u, v + jitter];
      reach.push(Math.max(Math.abs(u), Math.abs(v)));
    }
    reach.sort((a, b) => a - b);
    const far = reach.length ? reach[Math.floor(0.995 * (reach.length - 1))] : 0;
    extent = Math.max(3, 1.08 * far);
    overlay.dataset.extent = String(extent); // for tools: where a point of the plane is on the screen
    for (let i = 0; i < N; i++) [dotsX[i], dotsY[i]] = toScreen(planeU[i], planeV[i]);
  }

  function sharp(canvas) { // a canvas of size x size CSS pixels, drawn at the screen's resolution
    const ratio = window.devicePixelRatio || 1;
    canvas.width = size * ratio;
    canvas.height = size * ratio;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    return ctx;
  }
  const dotsCtx = sharp(dots), overlayCtx = sharp(overlay);

  function drawDots() {
    layOutDots();
    const ctx = dotsCtx;
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, size, size);
    const [x0, y0] = toScreen(0, 0);
    ctx.strokeStyle = "#e3e6e9";
    ctx.lineWidth = 1;
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#8a949e";
    for (let t = Math.ceil(-extent); t <= Math.floor(extent); t++) { // a grid line and a number at every unit
      const [x, y] = toScreen(t, t);
      ctx.beginPath();
      ctx.moveTo(x, 0); ctx.lineTo(x, size); ctx.moveTo(0, y); ctx.lineTo(size, y);
      ctx.stroke();
      if (t !== 0 && Math.abs(t) < extent - 0.25) { // none in the corners, where they would meet
        ctx.fillText(String(t), x + 2, size - 4);
        ctx.fillText(String(t), 3, y - 2);
      }
    }
    ctx.strokeStyle = "#aab3bb";
    ctx.beginPath();
    ctx.moveTo(x0, 0); ctx.lineTo(x0, size); ctx.moveTo(0, y0); ctx.lineTo(size, y0);
    ctx.stroke();
    ctx.setLineDash([5, 4]); // the prior's 1 and 2 sigma
    ctx.strokeStyle = "#6b7680";
    for (const radius of [1, 2]) {
      ctx.beginPath();
      ctx.arc(x0, y0, (radius / (2 * extent)) * size, 0, 2 * Math.PI);
      ctx.stroke();
    }
    ctx.setLineDash([]);
    ctx.globalAlpha = 0.7;
    for (let i = 0; i < N; i++) {
      ctx.fillStyle = colourOf(labels[i]);
      ctx.beginPath();
      ctx.arc(dotsX[i], dotsY[i], 2.2, 0, 2 * Math.PI);
      ctx.fill();
    }
    ctx.globalAlpha = 1;
    ctx.fillStyle = "#1d2125";
    ctx.font = "12px system-ui, sans-serif";
    ctx.fillText(`${axes[axisX].short} \u2192`, size - 44, y0 - 6);
    if (axes[axisY].short) ctx.fillText(`\u2191 ${axes[axisY].short}`, x0 + 6, 14);
  }

  function marker(ctx, z, colour, radius) {
    const [x, y] = toScreen(...project(z));
    ctx.strokeStyle = colour;
    ctx.beginPath();
    ctx.arc(x, y, radius, 0, 2 * Math.PI);
    ctx.stroke();
    return [x, y];
  }

  // the overlay for a state {z, picked (a dot, or -1), pathStart, pathEnd (z, or null)}
  function drawOverlay(state) {
    const ctx = overlayCtx;
    ctx.clearRect(0, 0, size, size);
    ctx.lineWidth = 2;
    if (state.pathStart) {
      const [x, y] = marker(ctx, state.pathStart, "#111111", 5);
      if (state.pathEnd) {
        const [x1, y1] = marker(ctx, state.pathEnd, "#111111", 5);
        ctx.beginPath();
        ctx.moveTo(x, y); ctx.lineTo(x1, y1);
        ctx.stroke();
      }
    }
    if (state.picked >= 0) {
      ctx.strokeStyle = "#111111";
      ctx.beginPath();
      ctx.arc(dotsX[state.picked], dotsY[state.picked], 6, 0, 2 * Math.PI);
      ctx.stroke();
    }
    const [x, y] = marker(ctx, state.z, "#1f6feb", 7);
    ctx.beginPath();
    ctx.moveTo(x - 11, y); ctx.lineTo(x + 11, y); ctx.moveTo(x, y - 11); ctx.lineTo(x, y + 11);
    ctx.stroke();
  }

  return {
    axes,
    project,
    moved,
    drawDots,
    drawOverlay,
    // where a pointer event is: {x, y} in CSS pixels on the plane, and uv, that point of the plane
    pointAt(event) {
      const box = overlay.getBoundingClientRect();
      const x = event.clientX - box.left, y = event.clientY - box.top;
      return {x, y, uv: fromScreen(x, y)};
    },
    // the dot nearest to (x, y), if one is within PICK_RADIUS; else -1
    nearestDot(x, y) {
      let best = -1, bestDistance = PICK_RADIUS * PICK_RADIUS;
      for (let i = 0; i < N; i++) {
        const d = (dotsX[i] - x) ** 2 + (dotsY[i] - y) ** 2;
        if (d <= bestDistance) [best, bestDistance] = [i, d];
      }
      return best;
    },
    // choose the axes (indices into axes) and redraw the dots; the same axis twice swaps them, keeping `changed`
    // ("x" or "y") as asked. Returns the two now shown.
    choose(x, y, changed) {
      if (x === y) [x, y] = changed === "x" ? [x, axisX] : [axisY, y];
      [axisX, axisY] = [x, y];
      drawDots();
      return [axisX, axisY];
    },
  };
}
