// The explorer page: the latent plane, the image decoded at z, the sliders, the classes, a picked test image and a
// path, drawn from the data that minivae/figures/explorer.py put in the page; and window.minivae, the hook for
// tests and tools (docs/explorer.md). It runs after explorer_decoder.js and explorer_plane.js, in the same script.
//
// The state is z (the latent point shown), the label (for a model that takes a class), whether z follows the
// pointer, the picked test image and the path's two ends. Every change of state ends in one render(), which
// decodes z and draws everything that depends on it; pointer moves and slider drags ask for a render at the next
// animation frame, so that a burst of events costs one decode per frame.

(function () {
  "use strict";

  const FORMAT = 1; // explorer.FORMAT
  const PLANE = 460; // the plane's size in CSS pixels (explorer_page.html)
  const PATH_FRAMES = 12;
  const TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf"]; // matplotlib's, as in the run's latent_scatter.png

  const $ = (id) => document.getElementById(id);

  function fail(err) {
    $("error").textContent = `This page cannot show the model: ${err.message}`;
    $("error").classList.remove("hidden");
    throw err;
  }

  let data, decoder;
  try {
    data = JSON.parse($("minivae-data").textContent);
    if (data.format !== FORMAT) throw new Error(`its data has format ${data.format}, this page reads ${FORMAT}`);
    decoder = makeDecoder(data.decoder);
  } catch (err) {
    fail(err);
  }

  // ---- the model and the test images

  const info = data.info, L = info.latent, K = info.classes, [H, W] = info.imageShape;
  const names = data.classNames, N = data.points.count;
  const means = base64Floats(data.points.means); // (N, L)
  const labels = base64Bytes(data.points.labels); // (N,)
  const input = new Float32Array(decoder.inputSize); // [z, onehot(y)]: a Float32Array rounds z to float32

  function meanOf(i) {
    return Array.from(means.subarray(i * L, (i + 1) * L));
  }

  function decodeAt(z, label) {
    input.fill(0);
    for (let k = 0; k < L; k++) input[k] = z[k];
    if (K) input[L + label] = 1;
    return decoder.decode(input);
  }

  // the test images: 16 grey levels, two pixels a byte, deflated (explorer.pack_images)
  let images = null, imagesProblem = null;
  async function inflate(text) {
    if (typeof DecompressionStream === "undefined") throw new Error("this browser has no DecompressionStream");
    const stream = new Blob([base64Bytes(text)]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }
  function testImage(i) {
    const values = new Float32Array(H * W), start = i * (H * W / 2);
    for (let p = 0; p < H * W; p++) {
      const byte = images[start + (p >> 1)];
      values[p] = ((p & 1) ? byte & 15 : byte >> 4) / data.points.greyLevels;
    }
    return values;
  }

  // ---- drawing pixels

  const pictures = new Map(); // canvas -> its ImageData, made once
  function drawPixels(canvas, values) {
    let picture = pictures.get(canvas);
    if (!picture) {
      canvas.width = W;
      canvas.height = H;
      picture = canvas.getContext("2d").createImageData(W, H);
      pictures.set(canvas, picture);
    }
    const rgba = picture.data;
    for (let p = 0; p < H * W; p++) {
      const grey = Math.round(Math.min(Math.max(values[p], 0), 1) * 255);
      rgba[4 * p] = rgba[4 * p + 1] = rgba[4 * p + 2] = grey;
      rgba[4 * p + 3] = 255;
    }
    canvas.getContext("2d").putImageData(picture, 0, 0);
  }

  function colourOf(label) {
    return names.length <= 10 ? TAB10[label % 10] : `hsl(${(360 * label) / names.length}, 65%, 45%)`;
  }

  // ---- the state

  const state = {z: new Array(L).fill(0), label: 0, follow: true, picked: -1, pathStart: null, pathEnd: null};

  // ---- the plane (explorer_plane.js)

  const overlay = $("overlay");
  const plane = makePlane({dots: $("dots"), overlay, size: PLANE, latent: L, count: N, meanOf, labels,
    principal: data.principal, colourOf});

  // ---- the pictures beside the plane

  // The notes under the image change at most 4 times a second (a number that changes 60 times a second cannot be
  // read), and the last one written is current.
  let drawTime = 0, noteTimer = null;
  function drawDecoded() {
    const started = performance.now();
    drawPixels($("decoded"), decodeAt(state.z, state.label));
    drawTime = performance.now() - started;
    if (noteTimer === null) noteTimer = setTimeout(writeNotes, 250);
  }

  function writeNotes() {
    noteTimer = null;
    const [u, v] = plane.project(state.z);
    $("decoded-note").textContent = `decoded and drawn in ${drawTime.toFixed(1)} ms` +
      (K ? `, as ${names[state.label]}` : "");
    $("pointer-note").textContent = `z is at (${u.toFixed(2)}, ${v.toFixed(2)}) on the plane`;
  }

  const classButtons = [];
  function drawClasses() {
    classButtons.forEach((button, c) => {
      drawPixels(button.canvas, decodeAt(state.z, c));
      button.element.classList.toggle("chosen", c === state.label);
    });
    if (K && $("label").value !== String(state.label)) $("label").value = String(state.label);
  }

  let pickedShown = null;
  function drawPicked() {
    const key = `${state.picked}/${images !== null}/${imagesProblem}`;
    if (state.picked < 0 || key === pickedShown) return;
    pickedShown = key;
    const i = state.picked;
    $("picked-caption").textContent = `test image ${i + 1}: ${names[labels[i]]}` +
      (images ? "" : imagesProblem ? ` (not shown: ${imagesProblem})` : " (unpacking)");
    if (images) drawPixels($("picked-image"), testImage(i));
    drawPixels($("picked-recon"), decodeAt(meanOf(i), labels[i])); // decode(encoder mean), with its own class
  }

  let pathShown = null;
  function drawPath() {
    const key = JSON.stringify([state.pathStart, state.pathEnd, state.label]);
    if (key === pathShown) return;
    pathShown = key;
    const strip = $("path-strip");
    strip.replaceChildren();
    if (!state.pathStart || !state.pathEnd) {
      $("path-caption").textContent = state.pathStart ? "now the other end: shift-click, or \u201cpath to here\u201d"
        : "shift-click two points on the plane";
      return;
    }
    for (let f = 0; f < PATH_FRAMES; f++) {
      const t = f / (PATH_FRAMES - 1), canvas = document.createElement("canvas");
      canvas.className = "pixels";
      strip.appendChild(canvas);
      drawPixels(canvas, decodeAt(state.pathStart.map((s, k) => (1 - t) * s + t * state.pathEnd[k]), state.label));
    }
    $("path-caption").textContent = `the straight line between the two points, ${PATH_FRAMES} steps` +
      (K ? `, as ${names[state.label]}` : "");
  }

  // ---- the sliders: one per latent unit (those explorer.slider_units chose)

  const sliders = data.sliders.units.map((k) => {
    const label = document.createElement("label"), name = document.createElement("span");
    const input = document.createElement("input"), output = document.createElement("output");
    const range = data.sliders.ranges[k];
    name.textContent = `z${k + 1}`;
    Object.assign(input, {type: "range", min: -range, max: range, step: 0.01, value: 0});
    input.setAttribute("aria-label", `latent unit z${k + 1}`);
    input.addEventListener("input", () => {
      state.z[k] = input.valueAsNumber;
      request();
    });
    label.append(name, input, output);
    $("sliders").appendChild(label);
    return {k, input, output};
  });
  if (data.sliders.units.length < L) {
    $("sliders-note").textContent = `${data.sliders.units.length} of the ${L} latent units have a slider: those ` +
      "whose encoder means vary most. The others keep their value (a click on a dot sets them).";
  }

  function drawSliders() {
    for (const {k, input, output} of sliders) {
      const text = state.z[k].toFixed(2);
      if (output.textContent !== text) {
        output.textContent = text;
        input.value = String(state.z[k]);
      }
    }
  }

  // ---- one redraw, and the requests for one

  function render() {
    drawDecoded();
    drawClasses();
    plane.drawOverlay(state);
    drawSliders();
    drawPicked();
    drawPath();
  }

  let pendingPoint = null, frameAsked = false;
  function request() {
    if (frameAsked) return;
    frameAsked = true;
    requestAnimationFrame(() => {
      frameAsked = false;
      if (pendingPoint) {
        state.z = plane.moved(state.z, ...pendingPoint);
        pendingPoint = null;
      }
      render();
    });
  }

  // ---- the pointer on the plane

  function setFollow(follow) {
    state.follow = follow;
    $("follow").checked = follow;
  }

  overlay.addEventListener("pointermove", (event) => {
    if (!state.follow) return;
    pendingPoint = plane.pointAt(event).uv;
    request();
  });

  overlay.addEventListener("click", (event) => {
    const {x, y, uv} = plane.pointAt(event);
    const i = plane.nearestDot(x, y);
    if (event.shiftKey) { // a path end: the dot's mean, or the point of the plane
      const end = i >= 0 ? meanOf(i) : plane.moved(state.z, ...uv);
      if (!state.pathStart || state.pathEnd) [state.pathStart, state.pathEnd] = [end, null];
      else state.pathEnd = end;
    } else if (i >= 0) { // z moves to the test image's encoder mean, and stays there
      state.picked = i;
      state.z = meanOf(i);
      if (K) state.label = labels[i];
      setFollow(false);
      pendingPoint = null;
    } else {
      setFollow(true);
      state.z = plane.moved(state.z, ...uv);
    }
    render();
  });

  $("follow").addEventListener("change", (event) => setFollow(event.target.checked));
  $("path-start").addEventListener("click", () => {
    state.pathStart = state.z.slice();
    render();
  });
  $("path-end").addEventListener("click", () => {
    state.pathEnd = state.z.slice();
    if (!state.pathStart) state.pathStart = new Array(L).fill(0); // from the prior's mean
    render();
  });

  // ---- the axes and the classes

  for (const [id, chosen] of [["axis-x", 0], ["axis-y", 1]]) {
    const select = $(id);
    plane.axes.forEach((axis, a) => select.add(new Option(axis.name, String(a), a === chosen, a === chosen)));
    select.addEventListener("change", () => {
      const [x, y] = plane.choose(+$("axis-x").value, +$("axis-y").value, id === "axis-x" ? "x" : "y");
      $("axis-x").value = String(x);
      $("axis-y").value = String(y);
      render();
    });
  }
  if (L <= 2) $("axes").classList.add("hidden"); // the plane is z itself

  const present = new Set(labels);
  names.forEach((name, c) => {
    if (!present.has(c)) return;
    const item = document.createElement("span"), swatch = document.createElement("i");
    swatch.style.background = colourOf(c);
    item.append(swatch, name);
    $("legend").appendChild(item);
  });

  if (K) {
    names.slice(0, K).forEach((name, c) => {
      $("label").add(new Option(name, String(c)));
      const element = document.createElement("button"), canvas = document.createElement("canvas");
      canvas.className = "pixels";
      element.append(canvas, name);
      element.title = `decode as ${name}`;
      element.addEventListener("click", () => {
        state.label = c;
        render();
      });
      $("classes").appendChild(element);
      classButtons.push({element, canvas});
    });
    $("label").addEventListener("change", (event) => {
      state.label = +event.target.value;
      render();
    });
  } else {
    $("label-box").classList.add("hidden");
    $("classes-box").classList.add("hidden");
  }

  // ---- the title and the summary

  document.title = `minivae explorer: ${data.title}`;
  $("title").textContent = document.title;
  for (const [term, text] of data.summary) {
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = term;
    dd.textContent = text;
    $("summary").append(dt, dd);
  }

  // ---- the hook: window.minivae (docs/explorer.md)

  function checkedZ(z) {
    if (!z || typeof z.length !== "number" || z.length !== L) throw new TypeError(`z must hold ${L} numbers`);
    const values = Array.from(z, Number);
    if (!values.every(Number.isFinite)) throw new TypeError("z must hold finite numbers");
    return values;
  }

  function checkedLabel(label, needed) {
    if (!K) {
      if (label !== undefined && label !== null) throw new TypeError("this model takes no label");
      return 0;
    }
    if (label === undefined || label === null) {
      if (needed) throw new TypeError(`this model decodes a class: give a label from 0 to ${K - 1}`);
      return state.label;
    }
    if (!Number.isInteger(label) || label < 0 || label >= K) throw new RangeError(`label must be 0 to ${K - 1}`);
    return label;
  }

  const ready = inflate(data.points.images).then(
    (bytes) => { images = bytes; },
    (err) => { imagesProblem = err.message; },
  ).then(() => { pickedShown = null; drawPicked(); });

  window.minivae = Object.freeze({
    info: Object.freeze({latent: L, classes: K, imageShape: [H, W], classNames: names.slice(),
      summary: data.summary.map((row) => row.slice())}),
    // the pixel means the page would draw at z (as class `label`): a plain array of H*W numbers in [0, 1]
    decode: (z, label) => Array.from(decodeAt(checkedZ(z), checkedLabel(label, true))),
    // move the view to z (and the label; without one the label stays), and redraw now
    set(z, label) {
      const values = checkedZ(z);
      state.label = checkedLabel(label, false);
      state.z = values;
      pendingPoint = null;
      render();
    },
    current: () => ({z: state.z.slice(), label: K ? state.label : null}),
    ready, // a Promise, settled once the test images are unpacked
  });

  plane.drawDots();
  render();
})();
