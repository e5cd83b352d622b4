// How long the job page takes to turn a large job's events into its curves
// (web/src/events.js curves()): 1000 epochs and 500 ADMM iterations of 100
// layers. Run: node tests/web/bench_curves.mjs (figures: docs/benchmarks.md).
import { curves } from "../../web/src/events.js";
const ev = [];
let id = 0;
for (let e = 1; e <= 1000; e++) {
  ev.push({ id: ++id, t: "e", d: { task: "compress", epoch: e, epochs: 1000, loss: 1 / e, train_accuracy: 0.9, test_accuracy: 0.9, lr: 0.01, sparsity: 0.5 } });
  if (e % 2 === 0) ev.push({ id: ++id, t: "i", d: { stage: 1, iter: e / 2, layers: Array.from({ length: 100 }, (_, k) => ({ name: "layer" + k, rho: 0.001 * e, residual: 1 / e })) } });
}
for (let r = 0; r < 3; r++) {
  const t = performance.now();
  const c = curves(ev);
  console.log(`curves(): ${ev.length} events (1000 epochs, 500 ADMM iterations x 100 layers): ${(performance.now() - t).toFixed(1)} ms, ${c.residual.length - 1} residual series of ${c.residual[0].length} points`);
}
