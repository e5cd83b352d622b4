#!/usr/bin/env node
// ONNX Runtime inference peer of the compiler benchmark (make bench-compile).
//
// npm's onnxruntime-node (its CPU build ships in the package), installed by
// tests/bench/compile.sh into build/ort (never committed):
//   ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node
// Session: CPU execution provider, graphOptimizationLevel 'all', sequential
// execution, intraOpNumThreads THREADS, interOpNumThreads 1. Runs the input
// WARMUP times untimed, then RUNS times timed, one session.run per timing
// (process.hrtime around the awaited call, so the N-API call and the
// promise are inside the figure, tens of microseconds), and prints one JSON
// line on stdout with the keys of the generated bundle's bench:
//
//   {"engine":"onnxruntime","model","variant","threads","batch","runs",
//    "latency_ms":{"mean","p50","p90","min"},"max_rel_err",...}
//
// max_rel_err = max|y - ref| / max|ref| against REF (PyTorch's logits).
// Percentiles interpolate linearly between order statistics, as numpy's
// default (tests/bench/torch_infer.py).
//
// Usage: node ort_bench.js --model M.onnx --input X.npy [--ref Y.npy]
//          [--name vgg16-cifar] [--variant dense] [--runs 200] [--warmup 20]
//          [--threads 2] [--ort-dir build/ort]
'use strict';

const fs = require('fs');
const path = require('path');

function parseArgs(argv) {
  const a = {runs: 200, warmup: 20, threads: 2, name: '', variant: '', ortDir: 'build/ort'};
  const keys = {'--model': 'model', '--input': 'input', '--ref': 'ref', '--name': 'name',
                '--variant': 'variant', '--runs': 'runs', '--warmup': 'warmup',
                '--threads': 'threads', '--ort-dir': 'ortDir'};
  for (let i = 0; i < argv.length; i += 2) {
    const k = keys[argv[i]];
    if (k === undefined || i + 1 >= argv.length) {
      throw new Error(`ort_bench: unknown option or missing value: ${argv[i]}`);
    }
    a[k] = ['runs', 'warmup', 'threads'].includes(k) ? parseInt(argv[i + 1], 10) : argv[i + 1];
  }
  if (!a.model || !a.input) throw new Error('ort_bench: --model and --input are required');
  return a;
}

// Reads a little-endian float32 C-order .npy (format 1.0 or 2.0).
function readNpy(file) {
  const b = fs.readFileSync(file);
  if (b.toString('latin1', 1, 6) !== 'NUMPY') throw new Error(`${file}: not a .npy file`);
  const major = b[6];
  const hlen = major === 1 ? b.readUInt16LE(8) : b.readUInt32LE(8);
  const off = (major === 1 ? 10 : 12) + hlen;
  const hdr = b.toString('latin1', major === 1 ? 10 : 12, off);
  if (!/'descr':\s*'<f4'/.test(hdr) || /'fortran_order':\s*True/.test(hdr)) {
    throw new Error(`${file}: only little-endian float32 C-order arrays (${hdr.trim()})`);
  }
  const shape = hdr.match(/'shape':\s*\(([^)]*)\)/)[1].split(',')
                    .map((s) => s.trim()).filter((s) => s.length).map(Number);
  const n = shape.reduce((x, y) => x * y, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = b.readFloatLE(off + 4 * i);
  return {shape, data};
}

function percentile(sorted, q) {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const ort = require(require.resolve('onnxruntime-node', {paths: [path.resolve(a.ortDir)]}));
  const session = await ort.InferenceSession.create(a.model, {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: a.threads,
    interOpNumThreads: 1,
  });
  const x = readNpy(a.input);
  const feeds = {[session.inputNames[0]]: new ort.Tensor('float32', x.data, x.shape)};
  const outName = session.outputNames[0];
  let y;
  for (let i = 0; i < a.warmup; i++) y = (await session.run(feeds))[outName];
  const times = [];
  for (let i = 0; i < a.runs; i++) {
    const t0 = process.hrtime.bigint();
    y = (await session.run(feeds))[outName];
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  let err = null;
  if (a.ref) {
    const ref = readNpy(a.ref).data;
    let num = 0, den = 1e-30;
    for (let i = 0; i < ref.length; i++) {
      num = Math.max(num, Math.abs(y.data[i] - ref[i]));
      den = Math.max(den, Math.abs(ref[i]));
    }
    err = ref.length === y.data.length ? num / den : Infinity;
  }
  const s = [...times].sort((p, q) => p - q);
  console.log(JSON.stringify({
    engine: 'onnxruntime', model: a.name || path.basename(a.model, '.onnx'), variant: a.variant,
    target: 'cpu', threads: a.threads, batch: x.shape[0], runs: a.runs, warmup: a.warmup,
    latency_ms: {mean: times.reduce((p, q) => p + q, 0) / times.length,
                 p50: percentile(s, 0.5), p90: percentile(s, 0.9), min: s[0]},
    max_rel_err: err, ort_version: ort.env.versions ? ort.env.versions.node : null,
  }));
}

main().catch((e) => {
  console.error(e.message || e);
  process.exit(1);
});
