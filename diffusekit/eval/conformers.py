"""Conformer-generation metrics: coverage and matching (recall) as GeoDiff defines them (Xu et al. 2022, sec. 5.1,
after Ganea et al. 2021 "GeoMol"), and RDKit's ETKDG as the baseline to beat.

For one molecule with reference conformers S_r (n of them) and generated ones S_g (GeoDiff generates 2n: GEN_RATIO):
    RMSD(R, G) = min over rigid motions (no reflection) and over the graph's symmetries of the heavy-atom RMSD:
                 RDKit's `rdMolAlign.GetBestRMS` with hydrogens removed, as GeoDiff's `get_best_rmsd` does
    COV-R = |{R in S_r : min_{G in S_g} RMSD(R, G) < delta}| / n     (the share of references that were found)
    MAT-R = 1/n sum_{R in S_r} min_{G in S_g} RMSD(R, G)             (how close the nearest generated one is, Å)
Per molecule, then the mean and the median over molecules (GeoDiff's tables give both).
delta = 0.5 Å, GeoDiff's value for GEOM-QM9 (1.25 Å is for GEOM-Drugs): `diffusekit.data.molecules` keeps
QM9-like molecules (H C N O F, at most 30 atoms with H, 11.7 heavy atoms on average), and a 1.25 Å threshold on
molecules this small would count almost any embedding as a match.

The baseline is ETKDGv3 alone (no MMFF), so it is scored against MMFF-minimised references: a generator that has
learned the references' distribution can beat it. `etkdg_scores(test)` gives the line the integrator prints; on the
default held-out split (151 molecules, `benchmarks/conformer_baseline.py`): COV-R 73.5% (median 83.3%), MAT-R
0.335 Å (median 0.327 Å) at seed 0, 73.8% / 0.331 Å at seed 1.

`evaluate_model(model, test)` is `diffusekit eval RUN` for a molecule run: ratio x n_m conformers per molecule from
the model (`generate`), scored the same way, beside ETKDG on the same molecules.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdMolAlign

from ..data.molgraph import ATOM_TYPES, add_conformers, as_mol, embed_conformers, rdkit_seed, to_rdkit

DELTA = 0.5  # Å, GeoDiff's COV threshold for QM9-sized molecules (module docstring)
GEN_RATIO = 2  # generated conformers per reference conformer, as GeoDiff
_H = ATOM_TYPES.index("H") + 1


def rmsd_matrix(atoms, bonds, refs, gens) -> np.ndarray:
    """(R, G) best heavy-atom RMSDs (Å) between references (R, n or A, 3) and generated conformers (G, n or A, 3)
    of the molecule (atoms (A,), bonds (A, A)); coordinates in Å, in the graph's atom order, padded or not."""
    atoms = np.asarray(atoms)
    heavy = Chem.RemoveHs(to_rdkit(atoms, bonds))
    real = np.flatnonzero(atoms > 0)
    keep = np.flatnonzero(atoms[real] != _H)  # heavy atoms among the real ones, in order (RemoveHs keeps it)
    if heavy.GetNumAtoms() != len(keep):
        raise ValueError(f"RemoveHs kept {heavy.GetNumAtoms()} atoms of {len(keep)} heavy ones")
    ref_mol, gen_mol = Chem.Mol(heavy), Chem.Mol(heavy)
    add_conformers(ref_mol, _real(refs, atoms, real)[:, keep])
    add_conformers(gen_mol, _real(gens, atoms, real)[:, keep])
    out = np.empty((ref_mol.GetNumConformers(), gen_mol.GetNumConformers()))
    for r in range(out.shape[0]):
        for g in range(out.shape[1]):  # aligns generated conformer g in place: harmless, the RMSD is alignment-free
            out[r, g] = rdMolAlign.GetBestRMS(gen_mol, ref_mol, g, r)
    return out


def coverage_matching(rmsd: np.ndarray, delta: float = DELTA) -> tuple[float, float]:
    """(COV-R, MAT-R) of one molecule from its (R, G) RMSD matrix; with no generated conformer, (0, nan)."""
    rmsd = np.asarray(rmsd, dtype=np.float64)
    if rmsd.ndim != 2 or rmsd.shape[0] == 0:
        raise ValueError(f"expected an (R, G) RMSD matrix with R >= 1; got shape {rmsd.shape}")
    if rmsd.shape[1] == 0:
        return 0.0, float("nan")
    best = rmsd.min(1)  # (R,) nearest generated conformer of each reference
    return float((best < delta).mean()), float(best.mean())


@dataclass
class ConformerScores:
    """COV-R (fraction) and MAT-R (Å) per molecule, with their mean and median over molecules."""

    cov: np.ndarray  # (M,)
    mat: np.ndarray  # (M,), nan where nothing was generated
    delta: float = DELTA
    smiles: list[str] | None = None

    def summary(self) -> dict:
        return {"molecules": len(self.cov), "delta": self.delta,
                "cov_mean": float(np.mean(self.cov)), "cov_median": float(np.median(self.cov)),
                "mat_mean": float(np.nanmean(self.mat)), "mat_median": float(np.nanmedian(self.mat)),
                "failed": int(np.isnan(self.mat).sum())}

    def format(self, name: str = "") -> str:
        """One line: 'NAME: COV-R 91.2% (median 100.0%), MAT-R 0.231 Å (median 0.197 Å); 151 molecules, ...'."""
        s = self.summary()
        failed = f", {s['failed']} generated nothing" if s["failed"] else ""
        return (f"{name + ': ' if name else ''}COV-R {100 * s['cov_mean']:.1f}% (median {100 * s['cov_median']:.1f}%), "
                f"MAT-R {s['mat_mean']:.3f} Å (median {s['mat_median']:.3f} Å); {s['molecules']} molecules, "
                f"delta {self.delta:g} Å{failed}")


def score_conformers(atoms, bonds, references, generated, delta: float = DELTA, smiles=None) -> ConformerScores:
    """COV-R / MAT-R of generated conformer sets against reference ensembles, one entry per molecule.

    atoms (M, A), bonds (M, A, A); references[m] (n_m, ., 3) and generated[m] (G_m, ., 3) in Å (`rmsd_matrix`)."""
    if not len(references) == len(generated) == len(atoms):
        raise ValueError(f"{len(atoms)} molecules, {len(references)} reference sets, {len(generated)} generated sets")
    cov, mat = np.empty(len(atoms)), np.empty(len(atoms))
    for m in range(len(atoms)):
        rmsd = rmsd_matrix(atoms[m], bonds[m], references[m], generated[m]) if len(generated[m]) else \
            np.zeros((len(references[m]), 0))
        cov[m], mat[m] = coverage_matching(rmsd, delta)
    return ConformerScores(cov, mat, delta, None if smiles is None else list(smiles))


def etkdg_baseline(smiles: str, count: int, seed: int = 0, threads: int = 1) -> np.ndarray:
    """`count` ETKDGv3 conformers of `smiles` without force-field minimisation: (k, n, 3) float64 Å, k <= count, in
    the atom order of `mol_to_graph(smiles)`. Seeded apart from the references' stream (`rdkit_seed`)."""
    coords, _ = embed_conformers(as_mol(smiles), count, rdkit_seed("etkdg-baseline", seed, smiles), threads=threads)
    return coords


def etkdg_scores(data, seed: int = 0, delta: float = DELTA, ratio: int = GEN_RATIO, progress: bool = True,
                 threads: int = 1) -> ConformerScores:
    """The ETKDG baseline on a MoleculeDataset (the held-out split): ratio x n_m conformers per molecule, scored
    against its references. `print(etkdg_scores(test).format("ETKDG"))`."""
    from tqdm.auto import tqdm

    gens = [etkdg_baseline(s, ratio * len(ref), seed, threads)
            for s, ref in tqdm(list(zip(data.smiles, data.references)), desc="ETKDG baseline", unit="mol",
                               disable=not progress)]
    return score_conformers(data.atoms, data.bonds, data.references, gens, delta, data.smiles)


def generate(model, data, ratio: int = GEN_RATIO, progress: bool = True, **sampling) -> list[np.ndarray]:
    """ratio x n_m conformers of each molecule of `data` (a MoleculeDataset) from `model` (a molecule
    `TrainedModel`): (ratio n_m, A, 3) float64 Å per molecule, in one seeded `model.sample` call, molecule by
    molecule. sampling: sampler, steps, seed, batch, ... as `TrainedModel.sample` takes them."""
    import torch
    from tqdm.auto import tqdm

    counts = [ratio * len(ref) for ref in data.references]
    m = torch.arange(len(counts)).repeat_interleave(torch.tensor(counts))
    with tqdm(total=int(sum(counts)), unit="conf", desc="generating", disable=not progress) as bar:
        x = model.sample(len(m), graphs=(data.atoms[m], data.bonds[m]), progress=bar.update, **sampling)
    coords = (x.double().transpose(1, 2) * model.info["data"]["scale"]).numpy()  # (G, A, 3) Å
    return np.split(coords, np.cumsum(counts)[:-1])


def evaluate_model(model, data, ratio: int = GEN_RATIO, delta: float = DELTA, baseline: bool = True,
                   baseline_seed: int = 0, progress: bool = True, **sampling) -> dict:
    """COV-R / MAT-R of a molecule model on `data` (the held-out split), beside ETKDG's on the same molecules
    (`baseline`): `diffusekit eval RUN`. Returns the JSON record: both summaries, the per-molecule scores, the
    sampling settings."""
    gens = generate(model, data, ratio, progress, **sampling)
    scores = score_conformers(data.atoms, data.bonds, data.references, gens, delta, data.smiles)
    res = {"kind": "molecules", "molecules": len(data.smiles), "ratio": ratio, "delta": delta,
           "sampling": {k: v for k, v in sampling.items() if k != "progress"}, "step": model.step,
           "model": scores.summary(), "per_molecule": {"smiles": data.smiles, "references":
                                                       [len(r) for r in data.references],
                                                       "cov": scores.cov.tolist(), "mat": scores.mat.tolist()},
           "lines": [scores.format("model")]}
    if baseline:
        base = etkdg_scores(data, seed=baseline_seed, delta=delta, ratio=ratio, progress=progress)
        res["etkdg"] = {**base.summary(), "seed": baseline_seed}
        res["per_molecule"]["etkdg_cov"], res["per_molecule"]["etkdg_mat"] = base.cov.tolist(), base.mat.tolist()
        res["lines"].append(base.format("ETKDG"))
    return res


def _real(coords, atoms, real) -> np.ndarray:
    """(k, n, 3) coordinates of the real atoms, from padded (k, A, 3) or already (k, n, 3)."""
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim == 2:
        coords = coords[None]
    return coords[:, real] if coords.shape[1] == len(atoms) else coords


__all__ = ["DELTA", "GEN_RATIO", "ConformerScores", "coverage_matching", "etkdg_baseline", "etkdg_scores",
           "evaluate_model", "generate", "rmsd_matrix", "score_conformers"]
