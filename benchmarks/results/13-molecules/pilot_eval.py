"""Pilot helper: COV-R/MAT-R of a run on the first n test molecules (no baseline)."""
import json, sys, time
from diffusekit.data.molecules import load_molecules
from diffusekit.eval.conformers import evaluate_model
from diffusekit.model import TrainedModel
run, n = sys.argv[1], int(sys.argv[2])
extra = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
test = load_molecules("test")
keep = list(range(n))
test.atoms, test.bonds, test.smiles, test.references = test.atoms[keep], test.bonds[keep], test.smiles[:n], test.references[:n]
m = TrainedModel.load(run)
t = time.time()
res = evaluate_model(m, test, baseline=False, progress=False, **{"sampler": "dpmpp-2m", "steps": 20, "seed": 0, **extra})
print(run, m.step, extra, res["lines"][0], f"{time.time()-t:.0f}s")
