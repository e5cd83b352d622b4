#!/usr/bin/env bash
# Writes the JSON fuzzer's seed corpus into DIR: every JSON example of
# docs/job-spec.md and docs/api.md (the job spec reference and the bodies
# of the API), each spec also as a complete job submission body, and a few
# worker registrations. Generated at build time, never committed.
set -euo pipefail
DIR=${1:?usage: make_json_seeds.sh DIR}
mkdir -p "$DIR"
exec /usr/bin/python3 - "$DIR" docs/job-spec.md docs/api.md <<'PY'
import json, re, sys

out, docs = sys.argv[1], sys.argv[2:]
n = 0

def seed(text):
    global n
    n += 1
    with open(f"{out}/seed{n:03d}.json", "w") as f:
        f.write(text)

for doc in docs:
    for block in re.findall(r"```json\n(.*?)```", open(doc).read(), re.S):
        seed(block)
        try:
            spec = json.loads(block)
        except ValueError:
            continue  # a schematic example: still a seed
        if "layers" in spec or "method" in spec:
            seed(json.dumps({"name": "j", "model_id": "mdl_a", "dataset_id": "dst_b",
                             "spec": spec, "pretrain": {"epochs": 1, "lr": 0.01},
                             "export": {"format": "onnx", "qdq": True}, "priority": 9}))
seed(json.dumps({"layers": [{"match": "fc*", "prune": {"scheme": "nm", "n": 2, "m": 4}},
                            {"match": "conv*", "prune": {"scheme": "filter", "rate": 2},
                             "quant": {"scheme": "pow2sum", "bits": 4}, "rho": 3e-3}],
                 "optimizer": {"momentum": 0.9, "weight_decay": 5e-4}, "seed": 7, "batch": 32,
                 "magnitude": {"steps": 2, "allocation": "global"}}))
seed(json.dumps({"name": "w", "device": {"cpu": "x", "cores": 4, "gpus": [{"name": "a"}]}}))
seed(json.dumps({"name": "k" * 64 + "\u00e9", "priority": 10, "max_attempts": 0}))
PY
