#!/usr/bin/python3
"""Tables of the compiler benchmark (tests/bench/compile.sh, docs/benchmarks.md).

  compile_report.py RESULTS.jsonl MODELS_DIR BUNDLES_DIR HAVE_COMPILE TOL

RESULTS.jsonl holds one JSON line per run (engine, model, variant,
latency_ms, max_rel_err, or error); MODELS_DIR the M.json files of
compile_models.py (MACs, storage). Prints:

1. The latency table: model, engine, variant, p50 / mean / min ms, effective
   GFLOP/s and speedup against the best dense peer of the same model.
   Effective GFLOP/s = 2 x MACs / p50, where MACs are the model's non-zero
   MACs (conv and linear layers, one image): for the dense model that is its
   dense count, for the pattern-pruned model the MACs left after pruning,
   for every engine alike, so a peer that multiplies the zeros shows a low
   figure. Beside it the machine's dense peak (OpenBLAS sgemm, same run).
2. The goal checks of issue 12: our pattern code >= 3x the best dense peer
   (PyTorch or ORT on the dense model), and our dense code within 1.2x of
   ORT's dense, on every model.
3. The storage table (compile_models.py storage()), with the size of the
   pattern bundle's weight file when there is one.
Exits 1 when a run failed or an output is further than TOL from its
reference; a goal not met is reported, not a failure.
"""
import glob
import json
import os
import sys

PEERS = ("pytorch", "onnxruntime")


def table(rows, align_left=2):
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for k, r in enumerate(rows):
        print(" | ".join(c.ljust(w[i]) if i < align_left else c.rjust(w[i])
                         for i, c in enumerate(r)))
        if k == 0:
            print("-+-".join("-" * x for x in w))


def bundle_weight_files(bundles, model):
    d = os.path.join(bundles, model + "_pattern")
    files = [os.path.join(d, "weights.bin")]
    if not os.path.exists(files[0]):
        files = sorted(glob.glob(os.path.join(d, "weights*")))
    return [f for f in files if os.path.isfile(f)]


def main():
    results, models_dir, bundles, have_compile, tol = sys.argv[1:6]
    have_compile = have_compile == "1"
    tol = float(tol)
    runs = [json.loads(line) for line in open(results) if line.strip()]
    failed = any("error" in r for r in runs)
    peak = next((r for r in runs if r["engine"] == "openblas" and "error" not in r), None)
    peak_gf = peak["gflops"] if peak else None
    models = list(dict.fromkeys(r["model"] for r in runs if r["engine"] != "openblas"))
    meta = {m: json.load(open(os.path.join(models_dir, m + ".json"))) for m in models}

    def p50(r):
        return r["latency_ms"]["p50"] if r and "error" not in r else None

    def find(m, engine, variant):
        return next((r for r in runs if r["model"] == m and r["engine"] == engine
                     and r["variant"] == variant), None)

    # ---- latency ----
    print("Batch 1, %s threads, p50 of %s runs; effective GFLOP/s = 2 x non-zero MACs / p50"
          % (runs[-1].get("threads", "?"), runs[-1].get("runs", "?")))
    print("machine dense peak (OpenBLAS sgemm, this run): %s GFLOP/s%s" % (
        "%.1f" % peak_gf if peak_gf else "n/a",
        " (by size: %s)" % ", ".join("%s: %.1f" % kv for kv in peak["by_size"].items())
        if peak else ""))
    print()
    rows = [("model", "engine", "variant", "MACs (M)", "p50 ms", "mean ms", "min ms",
             "GFLOP/s", "% of peak", "vs best dense peer", "max rel err")]
    best = {}
    for m in models:
        peers = [p50(find(m, e, "dense")) for e in PEERS]
        peers = [t for t in peers if t]
        best[m] = min(peers) if peers else None
        for r in runs:
            if r.get("model") != m:
                continue
            macs = meta[m][r["variant"]]["macs_nonzero"]
            eng = r["engine"]
            if "error" in r:
                rows.append((m, eng, r["variant"], "%.1f" % (macs / 1e6),
                             "FAILED: " + r["error"], "", "", "", "", "", ""))
                continue
            t = r["latency_ms"]
            gf = 2 * macs / (t["p50"] * 1e-3) / 1e9
            err = r.get("max_rel_err")
            if err is not None and err > tol:
                failed = True
            if eng == "ours" and r.get("macs_nonzero") not in (None, macs):
                note = " (bench says %d)" % r["macs_nonzero"]
            else:
                note = ""
            rows.append((m, eng, r["variant"], "%.1f%s" % (macs / 1e6, note),
                         "%.3f" % t["p50"], "%.3f" % t["mean"], "%.3f" % t["min"], "%.1f" % gf,
                         "%.0f %%" % (100 * gf / peak_gf) if peak_gf else "-",
                         "%.2fx" % (best[m] / t["p50"]) if best[m] else "-",
                         ("%.1e" % err if err is not None else "-")
                         + (" > %g!" % tol if err is not None and err > tol else "")))
    table(rows, 3)
    print()

    # ---- goals ----
    print("Goals (issue 12), same run:")
    for m in models:
        pat, den, ort = (p50(find(m, "ours", "pattern")), p50(find(m, "ours", "dense")),
                         p50(find(m, "onnxruntime", "dense")))
        if not have_compile:
            print("  %s: pending: the worker has no 'compile' command (best dense peer %s ms)"
                  % (m, "%.3f" % best[m] if best[m] else "n/a"))
            continue
        if pat and best[m]:
            s = best[m] / pat
            print("  %s: pattern code %.2fx the best dense peer (goal >= 3x): %s"
                  % (m, s, "met" if s >= 3 else "NOT met"))
        else:
            print("  %s: pattern code vs best dense peer: n/a (a run failed)" % m)
        if den and ort:
            q = den / ort
            print("  %s: our dense %.2fx ORT's dense time (goal <= 1.2x): %s"
                  % (m, q, "met" if q <= 1.2 else "NOT met"))
        else:
            print("  %s: our dense vs ORT dense: n/a (a run failed)" % m)
    print()

    # ---- storage ----
    print("Storage of the pattern-pruned models, bytes, every index counted "
          "(layouts: tests/bench/compile_models.py storage())")
    names = (("dense", "dense float32"), ("csr", "CSR (fp32, uint16 col, int32 row ptr)"),
             ("bitmask", "bitmask (1 bit/weight + fp32)"), ("fkw", "FKW (fp32)"),
             ("fkw_q8", "FKW + 8-bit (int8, fp32 scale/filter)"))
    rows = [("model", "format", "3x3 conv bytes", "rate", "whole model bytes", "rate")]
    for m in models:
        st = meta[m]["storage"]
        pl, wm = st["pruned_layers"], st["whole_model"]
        for key, label in names:
            rows.append((m, label, "{:,}".format(pl[key]), "%.2fx" % (pl["dense"] / pl[key]),
                         "{:,}".format(wm[key]), "%.2fx" % (wm["dense"] / wm[key])))
        files = bundle_weight_files(bundles, m)
        if files:
            size = sum(os.path.getsize(f) for f in files)
            rows.append((m, "bundle: " + ", ".join(os.path.basename(f) for f in files), "",
                         "", "{:,}".format(size), "%.2fx" % (wm["dense"] / size)))
        else:
            rows.append((m, "bundle weight file", "", "", "n/a (no bundle)", ""))
    table(rows, 2)
    print("whole model = the 3x3 convs in the format + the rest in float32 (1x1 and fully")
    print("connected weights, a bias per conv output channel with BatchNorm folded, fc biases).")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
