#!/bin/bash
# Part 2 of PLAN.md, exactly its commands, one after the other (run from the repository root).
set -euxo pipefail
echo '{"keep_last": 1000}' > /tmp/ldm-keep.json
diffusekit train-autoencoder --data phantoms --factor 8 --minutes 10 --out runs/ae-phantoms-f8 --no-progress
diffusekit train --data phantoms --minutes 30 --config /tmp/ldm-keep.json --checkpoint-minutes 2.5 --out runs/ldm-phantoms/pixel --no-progress
diffusekit train --data phantoms --minutes 30 --config /tmp/ldm-keep.json --checkpoint-minutes 2.5 --latent runs/ae-phantoms-f8 --out runs/ldm-phantoms/latent --no-progress
python benchmarks/latent_compare.py sampling runs/ldm-phantoms/pixel runs/ldm-phantoms/latent --num 500 --out benchmarks/results/10-latent/phantoms-sampling.json
echo QUIET-PART-DONE
python benchmarks/latent_compare.py autoencoder runs/ae-phantoms-f8 --n 1000 --out benchmarks/results/10-latent/phantoms-autoencoder.json
python benchmarks/latent_compare.py judge runs/ldm-phantoms/pixel runs/ldm-phantoms/latent --n 500 --out benchmarks/results/10-latent/phantoms-judged.json
