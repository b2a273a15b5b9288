// The decoder of a minivae model, run in the page: the list of layers that minivae/figures/explorer.py writes,
// interpreted one layer at a time, in float32, so that the page draws what minivae's VAE.decode returns.
//
// Each layer reads a Float32Array and writes its own (allocated once, when the page starts): a decode allocates
// nothing, which keeps the redraw smooth. Float32 as minivae computes it: every layer's output is rounded to
// float32 (Math.fround, or a store into a Float32Array); a weighted sum is added up in double precision and rounded
// once, at least as accurate as NumPy's float32 matrix products, whose own rounding differs from it by about 1e-6
// (tests/figures/test_explorer_browser.py holds the pixels to minivae's decode within 1e-5). The elementwise
// functions round after every operation, as NumPy's float32 arithmetic does.
//
// The layers follow the plain definitions in minivae/core: Dense is x @ W + b (layers.py); Conv2D and
// ConvTranspose2D are conv_reference.py's loops, with the padding that core/padding.py worked out (explorer.py
// writes each convolution's output shape and its top and left padding).

"use strict";

const f32 = Math.fround;

// ---- base64 into bytes and float32 arrays

function base64Bytes(text) {
  const chars = atob(text);
  const bytes = new Uint8Array(chars.length);
  for (let i = 0; i < chars.length; i++) bytes[i] = chars.charCodeAt(i);
  return bytes;
}

function base64Floats(text) {
  // little-endian float32, read through a DataView so that the byte order of the machine does not matter
  const bytes = base64Bytes(text);
  const view = new DataView(bytes.buffer);
  const values = new Float32Array(bytes.length / 4);
  for (let i = 0; i < values.length; i++) values[i] = view.getFloat32(4 * i, true);
  return values;
}

// ---- the elementwise functions, as minivae computes them in float32

// layers.sigmoid: with e = exp(-|x|) <= 1, 1 / (1 + e) for x >= 0 and e / (1 + e) below: exp never overflows
function sigmoid32(x) {
  const e = f32(Math.exp(-Math.abs(x)));
  return f32((x >= 0 ? 1 : e) / f32(1 + e));
}

// continuous_bernoulli.mean: E[x] = 1/(1 - e^-a) - 1/a for logits a, from its Taylor series below |a| < 0.5
const MEAN_TAYLOR_BELOW = 0.5;
const MEAN_SERIES = [1 / 12, -1 / 720, 1 / 30240, -1 / 1209600, 1 / 47900160].map(f32); // of a, a^3, ..., a^9

function cbMean32(a) {
  const r = Math.abs(a);
  if (r < MEAN_TAYLOR_BELOW) { // E[x] - 1/2 = a/12 - a^3/720 + ..., by Horner's rule in a^2
    const a2 = f32(a * a);
    let total = 0;
    for (let k = MEAN_SERIES.length - 1; k >= 0; k--) total = f32(f32(total * a2) + MEAN_SERIES[k]);
    return f32(0.5 + f32(total * a));
  }
  // E[x] - 1/2 = sign(a) (1/2 + e^-r / (1 - e^-r) - 1/r) with r = |a|: e^-r never overflows
  const halfGap = f32(f32(0.5 + f32(f32(Math.exp(-r)) / f32(-f32(Math.expm1(-r))))) - f32(1 / r));
  return f32(0.5 + (a < 0 ? -halfGap : halfGap));
}

const ELEMENTWISE = {relu: (x) => (x > 0 ? x : 0), sigmoid: sigmoid32, tanh: (x) => f32(Math.tanh(x))};
const OUTPUTS = {sigmoid: sigmoid32, "cb-mean": cbMean32, identity: (x) => x}; // what VAE.decode applies

// ---- the layers: each takes its entry and its input shape, and gives {shape, run(input) -> output}

function product(shape) {
  return shape.reduce((a, b) => a * b, 1);
}

function denseLayer(entry, shape) {
  // out_j = b_j + sum_i x_i W_ij;  W (in, out) row-major
  const n = entry.inSize, m = entry.outSize;
  if (shape.length !== 1 || shape[0] !== n) throw new Error(`a Dense(${n}, ${m}) cannot take shape ${shape}`);
  const W = base64Floats(entry.W), b = base64Floats(entry.b);
  const sums = new Float64Array(m), out = new Float32Array(m);
  return {shape: [m], run(x) {
    sums.fill(0);
    for (let i = 0; i < n; i++) {
      const xi = x[i];
      if (xi === 0) continue; // half of a ReLU's outputs
      const row = i * m;
      for (let j = 0; j < m; j++) sums[j] += xi * W[row + j];
    }
    for (let j = 0; j < m; j++) out[j] = f32(f32(sums[j]) + b[j]); // x @ W, then + b, as NumPy rounds them
    return out;
  }};
}

function elementwiseLayer(entry, shape) {
  const fn = ELEMENTWISE[entry.type], out = new Float32Array(product(shape));
  return {shape, run(x) {
    for (let k = 0; k < out.length; k++) out[k] = fn(x[k]);
    return out;
  }};
}

function reshapeLayer(entry, shape) {
  // a reshape moves no numbers: NCHW in C order is the same flat array
  const to = entry.type === "flatten" ? [product(shape)] : entry.shape;
  if (product(to) !== product(shape)) throw new Error(`cannot reshape ${shape} to ${to}`);
  return {shape: to, run: (x) => x};
}

// The range of v (out of count) for which v * stride + offset falls inside [0, size): [first, end).
function inside(count, stride, offset, size) {
  const first = Math.max(0, Math.ceil(-offset / stride));
  const end = Math.min(count, Math.floor((size - 1 - offset) / stride) + 1);
  return [first, end];
}

function conv2dLayer(entry, shape) {
  // conv2d_reference: out[o, u, v] = b[o] + sum_{c,i,j} W[o, c, i, j] x[c, u*sh + i - top, v*sw + j - left],
  // x read as 0 outside the image;  W (C_out, C_in, kh, kw)
  const [C, H, Wd] = entry.inShape, [O, OH, OW] = entry.outShape;
  const [kh, kw] = entry.kernel, [sh, sw] = entry.stride, [top, left] = entry.pad;
  checkShape(shape, entry.inShape);
  const W = base64Floats(entry.W), b = base64Floats(entry.b);
  const sums = new Float64Array(O * OH * OW), out = new Float32Array(O * OH * OW);
  return {shape: entry.outShape, run(x) {
    sums.fill(0);
    for (let i = 0; i < kh; i++) {
      const [u0, u1] = inside(OH, sh, i - top, H);
      for (let j = 0; j < kw; j++) {
        const [v0, v1] = inside(OW, sw, j - left, Wd);
        for (let o = 0; o < O; o++) {
          for (let c = 0; c < C; c++) {
            const w = W[((o * C + c) * kh + i) * kw + j];
            if (w === 0) continue;
            for (let u = u0; u < u1; u++) {
              const xRow = (c * H + u * sh + i - top) * Wd + j - left, outRow = (o * OH + u) * OW;
              for (let v = v0; v < v1; v++) sums[outRow + v] += w * x[xRow + v * sw];
            }
          }
        }
      }
    }
    return withBias(sums, b, OH * OW, out);
  }};
}

function convTranspose2dLayer(entry, shape) {
  // conv_transpose2d_reference: every input pixel adds its value times the kernel onto the output, stride apart:
  // out[o, u*sh + i - top, v*sw + j - left] += x[c, u, v] W[c, o, i, j], dropping what lands outside; then + b.
  // W (C_in, C_out, kh, kw). The loop runs over the input pixels, skipping those that are 0 (half of a ReLU's
  // outputs), and innermost over the output channels: the sums are kept channels-last, (H_out, W_out, C_out), and
  // the weights as (C_in, kh, kw, C_out), so that the innermost loop reads and writes consecutive numbers.
  const [C, H, Wd] = entry.inShape, [O, OH, OW] = entry.outShape;
  const [kh, kw] = entry.kernel, [sh, sw] = entry.stride, [top, left] = entry.pad;
  checkShape(shape, entry.inShape);
  const W = base64Floats(entry.W), b = base64Floats(entry.b);
  const taps = new Float32Array(W.length); // W as (C_in, kh, kw, C_out)
  for (let c = 0; c < C; c++) {
    for (let o = 0; o < O; o++) {
      for (let t = 0; t < kh * kw; t++) taps[(c * kh * kw + t) * O + o] = W[(c * O + o) * kh * kw + t];
    }
  }
  const sums = new Float64Array(OH * OW * O), out = new Float32Array(O * OH * OW);
  return {shape: entry.outShape, run(x) {
    sums.fill(0);
    for (let c = 0; c < C; c++) {
      for (let u = 0; u < H; u++) {
        for (let v = 0; v < Wd; v++) {
          const xv = x[(c * H + u) * Wd + v];
          if (xv === 0) continue;
          for (let i = 0; i < kh; i++) {
            const row = u * sh + i - top;
            if (row < 0 || row >= OH) continue;
            for (let j = 0; j < kw; j++) {
              const col = v * sw + j - left;
              if (col < 0 || col >= OW) continue;
              const at = (row * OW + col) * O, tap = ((c * kh + i) * kw + j) * O;
              for (let o = 0; o < O; o++) sums[at + o] += xv * taps[tap + o];
            }
          }
        }
      }
    }
    for (let o = 0; o < O; o++) { // back to channels-first, and + b
      for (let p = 0; p < OH * OW; p++) out[o * OH * OW + p] = f32(f32(sums[p * O + o]) + b[o]);
    }
    return out;
  }};
}

function checkShape(shape, expected) {
  if (shape.join(",") !== expected.join(",")) throw new Error(`a convolution for ${expected} cannot take ${shape}`);
}

function withBias(sums, b, perChannel, out) {
  for (let k = 0; k < out.length; k++) out[k] = f32(f32(sums[k]) + b[Math.floor(k / perChannel)]);
  return out;
}

const LAYERS = {
  dense: denseLayer, relu: elementwiseLayer, sigmoid: elementwiseLayer, tanh: elementwiseLayer,
  reshape: reshapeLayer, flatten: reshapeLayer, conv2d: conv2dLayer, "conv-transpose2d": convTranspose2dLayer,
};

// The decoder of explorer.py's description {inputSize, layers, output}: decode(input) takes the decoder's input
// (z, or [z, onehot(y)]) as a Float32Array and returns the pixel means, a Float32Array that the next decode
// overwrites (copy it to keep it).
function makeDecoder(description) {
  let shape = [description.inputSize];
  const layers = description.layers.map((entry) => {
    if (!(entry.type in LAYERS)) throw new Error(`this page cannot run a ${entry.type} layer`);
    const layer = LAYERS[entry.type](entry, shape);
    shape = layer.shape;
    return layer;
  });
  const output = OUTPUTS[description.output];
  if (!output) throw new Error(`this page does not know the output ${description.output}`);
  const pixels = new Float32Array(product(shape));
  return {inputSize: description.inputSize, outputSize: pixels.length, decode(input) {
    let x = input;
    for (const layer of layers) x = layer.run(x);
    for (let k = 0; k < pixels.length; k++) pixels[k] = output(x[k]);
    return pixels;
  }};
}
