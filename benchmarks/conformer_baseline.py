"""The baseline a conformer generator must beat: RDKit's ETKDGv3 (no MMFF) scored with COV-R / MAT-R (GeoDiff's
recall metrics, delta 0.5 Å) against the MMFF reference ensembles of the held-out molecules.

    PYTHONPATH=. python benchmarks/conformer_baseline.py [--seed 0] [--out baseline.json]

Builds the `molecules` cache on first use (printing its progress and time), then generates 2 x n_m conformers per
test molecule, as GeoDiff does, and prints the line 'ETKDG: COV-R ..., MAT-R ...'.
"""

import argparse
import json
import time

import machine  # benchmarks/machine.py (python puts this script's folder first on sys.path)
from diffusekit.data.molecules import load_molecules
from diffusekit.eval.conformers import etkdg_scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="the baseline's seed (the references have their own)")
    ap.add_argument("--out", help="write the summary and the per-molecule scores to this JSON file")
    args = ap.parse_args()
    t0 = time.perf_counter()
    test = load_molecules("test")
    print(f"{test.describe()}; loaded in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    scores = etkdg_scores(test, seed=args.seed)
    print(scores.format("ETKDG"), f"({time.perf_counter() - t0:.0f} s)")
    if args.out:
        per = [{"smiles": s, "references": len(r), "cov": c, "mat": m}
               for s, r, c, m in zip(test.smiles, test.references, scores.cov.tolist(), scores.mat.tolist())]
        with open(args.out, "w") as f:
            json.dump({"summary": scores.summary(), "seed": args.seed, "machine": machine.record(), "molecules": per},
                      f, indent=1)


if __name__ == "__main__":
    main()
