#!/usr/bin/env bash
# The main job on the embedded default: train on `digits` (1,797 real 8x8 digits) with the default budget
# (5 minutes), draw 64 samples with 20-step DPM-Solver++, and draw the forward and reverse process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
RUN=${RUN:-runs/digits-$(date +%Y%m%d-%H%M%S)}
diffusekit train --data digits --out "$RUN"
diffusekit sample "$RUN" --num 64 --sampler dpmpp-2m --steps 20 --out "$RUN/samples.npz" --grid "$RUN/samples.png"
diffusekit show "$RUN"
echo
echo "pictures:"
ls -1 "$RUN"/samples.png "$RUN"/show/forward.png "$RUN"/show/reverse.png "$RUN"/show/reverse.gif
