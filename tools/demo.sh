#!/usr/bin/env bash
# make demo: train LeNet-5 on the real Fashion-MNIST and print the result.
# (Later waves turn this into the full service demo: server, workers, a job.)
set -euo pipefail
WORKER=${1:?usage: demo.sh WORKER_BINARY}
EPOCHS=${DEMO_EPOCHS:-20}
mkdir -p build/demo
echo "demo: training LeNet-5 on Fashion-MNIST for $EPOCHS epochs (DEMO_EPOCHS to change)"
"$WORKER" train --model lenet5 --data idx:/usr/share/datasets/fashion-mnist \
    --epochs "$EPOCHS" --seed 1 --out build/demo/lenet5.safetensors | tee build/demo/result.json
/usr/bin/python3 - build/demo/result.json <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
print(f"\ndemo: LeNet-5 test accuracy {100*r['test_accuracy']:.2f}% after {r['epochs']} epochs, "
      f"{r['train_images_per_second']:.0f} training images/s on {r['threads']} threads, "
      f"peak RSS {r['peak_rss_bytes']/2**20:.0f} MB")
print("demo: checkpoint written to build/demo/lenet5.safetensors")
PY
