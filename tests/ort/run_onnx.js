// Runs an ONNX model in ONNX Runtime (npm's onnxruntime-node, installed
// here by `make deps`: tools/deps.sh runs `npm ci` in tests/ort) on a
// float32 .npy batch and writes the first output as a float32 .npy:
//
//   node tests/ort/run_onnx.js MODEL.onnx X.npy Y.npy [BATCH]
//
// A test peer only (never run time). The input is fed as it is, batch axis
// first, in chunks of BATCH samples (default 256), so a model exported with
// its normalisation (leading Sub/Div nodes) gets raw [0, 1] pixels.
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require(path.join(__dirname, 'node_modules', 'onnxruntime-node'));

function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf.toString('latin1', 1, 6) !== 'NUMPY') throw new Error(file + ': not a .npy file');
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const hstart = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', hstart, hstart + hlen);
  if (!/'descr': *'<f4'/.test(header) || /'fortran_order': *True/.test(header))
    throw new Error(file + ': want little-endian float32 in C order: ' + header);
  const shape = header.match(/'shape': *\(([^)]*)\)/)[1].split(',').map((s) => s.trim())
    .filter((s) => s.length > 0).map(Number);
  const off = hstart + hlen;
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(buf.buffer.slice(buf.byteOffset + off, buf.byteOffset + off + 4 * n));
  return { shape, data };
}

function writeNpy(file, shape, data) {
  let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
    shape.join(', ') + (shape.length === 1 ? ',' : '') + '), }';
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  fs.writeFileSync(file, Buffer.concat([head, Buffer.from(header, 'latin1'),
    Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
}

async function main() {
  const [model, xFile, yFile, batchArg] = process.argv.slice(2);
  if (!yFile) throw new Error('usage: run_onnx.js MODEL.onnx X.npy Y.npy [BATCH]');
  const batch = Number(batchArg || 256);
  const x = readNpy(xFile);
  const n = x.shape[0];
  const per = x.data.length / n;
  const sess = await ort.InferenceSession.create(model, { intraOpNumThreads: 2 });
  const inName = sess.inputNames[0];
  const outName = sess.outputNames[0];
  let out = null;
  let outShape = null;
  for (let i = 0; i < n; i += batch) {
    const b = Math.min(batch, n - i);
    const t = new ort.Tensor('float32', x.data.subarray(i * per, (i + b) * per),
      [b].concat(x.shape.slice(1)));
    const r = (await sess.run({ [inName]: t }))[outName];
    const perOut = r.data.length / b;
    if (out === null) {
      out = new Float32Array(n * perOut);
      outShape = [n].concat(r.dims.slice(1));
    }
    out.set(r.data, i * perOut);
  }
  writeNpy(yFile, outShape, out);
}

main().catch((e) => {
  console.error('run_onnx.js: ' + (e && e.message ? e.message : e));
  process.exit(1);
});
