"""`molecules`: small real molecules with reference conformer ensembles, for conformer generation as in GeoDiff
(Xu et al. 2022) and Torsional Diffusion (Jing et al. 2022): generate 3-D coordinates given the molecular graph.

    from diffusekit.data.molecules import load_molecules, MoleculeRecipe
    train = load_molecules("train")    # MoleculeDataset: x (N, 3, A), one row per reference conformer
    test = load_molecules("test")      # held-out molecules (never in train), with their reference ensembles
    atoms, bonds = train.graph(rows)   # (B, A), (B, A, A) int64: the conditioning of those rows

Source: `rdkit/Data/NCI/first_5K.smi` inside the RDKit wheel (RDConfig.RDDataDir): the first 4,999 structures of the
NCI open database as SMILES with NCI ids. It is the only file of real molecules in the wheel with more than a few
hundred entries (the other SMILES/SDF files are 20-200 test ligands of one target each), so it ships offline with
the chemistry package we need anyway.
Filter (QM9-like, Ramakrishnan et al. 2014): parses; one fragment (no salts); neutral, no radicals; only H, C, N,
O, F; at most 30 atoms counting hydrogens (QM9's largest has 29); at least 3 heavy atoms (an RMSD after alignment
needs 3 points); duplicates dropped by canonical SMILES without stereo (the graph carries no stereo, so two
stereoisomers are one graph and could otherwise sit on both sides of the split). 1,509 molecules remain (11.7 heavy
atoms, 22.3 atoms on average); `source_molecules` also counts what each rule dropped.
Split: by molecule, seeded permutation; TEST_FRACTION (10 %) held out, so no test graph is ever trained on: 1,358
train molecules (10,864 rows of x), 151 test molecules.

Reference ensembles (per molecule, GEOM-like but with a force field, not CREST/GFN2-xTB):
    ETKDGv3 (Wang et al. 2020), `embed` = 24 conformers, seeded per molecule (`molgraph.rdkit_seed`)
    -> MMFF94 minimisation (Halgren 1996), up to 2,000 iterations
    -> keep those within `energy_window` = 6 kcal/mol of the molecule's lowest (CREST's default window)
    -> greedy pruning in energy order: a conformer is kept when its heavy-atom RMSD (GetBestRMS, hydrogens
       removed, symmetry-aware) to every kept one is above `prune_rmsd` = 0.25 Å (half the COV delta, so two
       references within delta of each other can both count)
    -> the first `conformers` = K = 8 kept. A molecule with n < K distinct conformers (rigid ones have 1) repeats
       them in order to fill K rows, so every molecule has exactly K rows in x and appears K times in training;
       its reference ensemble for evaluation is the n distinct ones (`references`). In the default train split
       n = 1: 329 molecules, 2-7: 650, 8 (the cap): 379.
Layout (the model's): x (N, 3, A) float32 = coordinates in Å minus the plain mean of the molecule's real atoms
(hydrogens included; not the centre of mass: unweighted is what an equivariant net's mean-removal uses), divided
by SCALE; padding atoms are 0. A = the largest atom count in the data set (30 by default).

Cache: $DIFFUSEKIT_CACHE (else ~/.cache/diffusekit) / molecules / <key>.safetensors + <key>.json, written
atomically, no pickle; the key is the recipe version and a hash of the settings, the source file and the RDKit
version. The first build of the default set took 270 s (212 CPU-seconds) on this 2-core machine while other jobs
kept its load at ~7, so about 2 minutes on two free cores; it prints a tqdm line. Later loads take 0.05 s.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from rdkit import Chem, RDConfig, rdBase
from rdkit.Chem import rdForceFieldHelpers, rdMolAlign

from .dataset import DataError, cached_arrays, InMemoryDataset, recipe_from_options
from .molgraph import (ATOM_TYPES, add_conformers, as_mol, embed_conformers, mol_to_graph, rdkit_seed, to_rdkit,
                       write_sdf, write_xyz)

SOURCE = Path(RDConfig.RDDataDir) / "NCI" / "first_5K.smi"
RECIPE_VERSION = 1  # bump when the build below changes: it is part of the cache key
# Å per unit of x: the per-coordinate std of the centred default training set, over real atoms, is 1.78 Å, so x has
# std ~1. The cache holds Å; the scale is applied on loading (and kept in MoleculeDataset.scale).
SCALE = 1.8
TEST_FRACTION = 0.1


@dataclass(frozen=True)
class MoleculeRecipe:
    """Every setting the cached data depends on (the module docstring gives each default's reason)."""

    max_atoms: int = 30  # counting hydrogens
    conformers: int = 8  # K: reference conformers (rows of x) per molecule
    embed: int = 24  # ETKDG conformers embedded before MMFF and pruning (3K: enough for K distinct when they exist)
    prune_rmsd: float = 0.25  # Å, heavy atoms
    energy_window: float = 6.0  # kcal/mol above the molecule's MMFF minimum
    max_molecules: int | None = None  # only the first n filtered molecules (tests use a handful)
    test_fraction: float = TEST_FRACTION
    seed: int = 0

    def key(self) -> str:
        """File name of the cache: recipe version + hash of these settings, the source file and the RDKit version
        (ETKDG's and MMFF's numbers change between releases)."""
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True) + _file_sha1(SOURCE) + rdBase.rdkitVersion
        return f"nci-v{RECIPE_VERSION}-{hashlib.sha1(blob.encode()).hexdigest()[:12]}"


@dataclass(repr=False)
class MoleculeDataset(InMemoryDataset):
    """Conformers as an InMemoryDataset (x (N, 3, A) float32, labels None) plus the graph of each molecule.

    Per molecule m (M of them): atoms[m] (A,), bonds[m] (A, A), smiles[m], references[m] (n_m, atoms_m, 3) float64
    Å (the distinct reference conformers, real atoms only, centred). Per row r: mol_index[r]. `graph(rows)` gives
    the conditioning of a batch; `angstrom(x)` turns model coordinates back into Å. `kind` tells the trainer to
    build an EGNN and condition every row on its molecule's graph."""

    kind: ClassVar[str] = "molecules"
    atoms: torch.Tensor | None = None  # (M, A) int64, 0 = padding
    bonds: torch.Tensor | None = None  # (M, A, A) int64
    smiles: list[str] = field(default_factory=list)  # (M,) canonical, hydrogens implicit, no stereo
    mol_index: torch.Tensor | None = None  # (N,) int64 row -> molecule
    references: list[np.ndarray] = field(default_factory=list)  # (M,) of (n_m, atoms_m, 3) Å
    scale: float = SCALE
    atom_types: tuple[str, ...] = ATOM_TYPES  # index i + 1 in `atoms` is atom_types[i]
    recipe: dict = field(default_factory=dict)

    def graph(self, rows) -> tuple[torch.Tensor, torch.Tensor]:
        """(atoms (B, A), bonds (B, A, A)) of rows `rows` of x (an index tensor or list)."""
        m = self.mol_index[torch.as_tensor(rows)]
        return self.atoms[m], self.bonds[m]

    def first(self, n: int | None) -> "MoleculeDataset":
        """The first n molecules (all of them for None), their rows and references: a smaller evaluation set."""
        if n is None or n >= len(self.smiles):
            return self
        if n < 1:
            raise DataError(f"molecules: need at least 1 molecule, got n={n}")
        rows = self.mol_index < n
        return dataclasses.replace(self, x=self.x[rows], atoms=self.atoms[:n], bonds=self.bonds[:n],
                                   smiles=self.smiles[:n], mol_index=self.mol_index[rows],
                                   references=self.references[:n])

    def angstrom(self, x: torch.Tensor) -> torch.Tensor:
        """Model coordinates (B, 3, A) -> Å (B, A, 3), the layout of `to_rdkit`, `write_sdf` and RDKit."""
        return x.detach().float().transpose(1, 2) * self.scale

    def describe(self) -> str:
        return (f"{self.name}: {len(self.smiles)} molecules, {len(self)} conformers x 3 x {self.x.shape[2]} atoms, "
                f"scale {self.scale} Å (from {self.source})")

    def __repr__(self) -> str:
        return f"MoleculeDataset({self.describe()})"


def load_molecules(split: str = "train", recipe: MoleculeRecipe | None = None, *, progress: bool = True,
                   threads: int | None = None) -> MoleculeDataset:
    """The train or test molecules of `recipe` (default: MoleculeRecipe()), built on first use and cached.

    `threads` (default: all cores) only speeds up the first build; the result does not depend on it."""
    if split not in ("train", "test"):
        raise DataError(f"molecules: split must be 'train' or 'test'; got {split!r}")
    recipe = recipe or MoleculeRecipe()
    arrays, meta = _load_or_build(recipe, progress, threads)
    test = set(meta["test"])
    mols = [m for m in range(len(meta["smiles"])) if (m in test) == (split == "test")]
    if not mols:
        raise DataError(f"molecules: the {split} split of {recipe.key()} is empty; use more molecules")
    coords, K = arrays["coords"][mols], recipe.conformers  # (M', K, A, 3) Å, centred
    n_atoms = (arrays["atoms"][mols] > 0).sum(1)
    x = torch.from_numpy(coords.reshape(-1, *coords.shape[2:]) / SCALE).float().transpose(1, 2).contiguous()
    refs = [coords[i, : arrays["n_distinct"][m], : n_atoms[i]].astype(np.float64) for i, m in enumerate(mols)]
    return MoleculeDataset(
        x, None, None, name=f"molecules-{split}", source=f"{SOURCE} ({recipe.key()})",
        skipped=list(meta["skipped"]), notes=[f"x = (coords - mean over real atoms) / {SCALE} Å"],
        atoms=torch.from_numpy(arrays["atoms"][mols]).long(), bonds=torch.from_numpy(arrays["bonds"][mols]).long(),
        smiles=[meta["smiles"][m] for m in mols], mol_index=torch.arange(len(mols)).repeat_interleave(K),
        references=refs, scale=SCALE, atom_types=tuple(meta["atom_types"]), recipe=dict(meta["recipe"]),
    )


def load_training_molecules(**recipe) -> MoleculeDataset:
    """`--data molecules`: the train split of MoleculeRecipe(**recipe) (a run's `data_options`; none: the default
    recipe). An unknown setting is a one-line DataError."""
    return load_molecules("train", recipe_from_options(MoleculeRecipe, "molecules", recipe))


def source_molecules(max_atoms: int = 30) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """The filtered source: [(NCI id, canonical SMILES)] in file order, and how many lines each rule dropped."""
    kept, seen, dropped = [], set(), {}
    for line in SOURCE.read_text().splitlines():
        smiles, nci_id = (line.split() + ["?"])[:2]
        reason, canonical = _check(smiles, max_atoms)
        reason = reason or ("duplicate" if canonical in seen else None)
        if reason:
            dropped[reason] = dropped.get(reason, 0) + 1
        else:
            seen.add(canonical)
            kept.append((nci_id, canonical))
    return kept, dropped


def _check(smiles: str, max_atoms: int) -> tuple[str | None, str]:
    """(why the filter drops `smiles` or None, its canonical SMILES without stereo)."""
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return "unparsable", ""
    atoms = list(mol.GetAtoms())
    if len(Chem.GetMolFrags(mol)) > 1:
        return "several fragments", ""
    if any(a.GetFormalCharge() or a.GetNumRadicalElectrons() for a in atoms):
        return "charged or radical", ""
    if any(a.GetSymbol() not in ATOM_TYPES for a in atoms):
        return f"elements other than {' '.join(ATOM_TYPES)}", ""
    if len(atoms) < 3:
        return "fewer than 3 heavy atoms", ""
    if Chem.AddHs(mol).GetNumAtoms() > max_atoms:
        return f"more than {max_atoms} atoms with hydrogens", ""
    return None, Chem.MolToSmiles(mol, isomericSmiles=False)


def reference_ensemble(smiles: str, recipe: MoleculeRecipe, threads: int = 1):
    """(coords (K, n, 3) float32 Å centred, energies (K,) kcal/mol, n distinct), or None when embedding fails."""
    mol = as_mol(smiles)
    if not rdForceFieldHelpers.MMFFHasAllMoleculeParams(mol):
        return None
    coords, energies = embed_conformers(mol, recipe.embed, rdkit_seed("reference", recipe.seed, smiles), mmff=True,
                                        threads=threads)
    if not len(coords):
        return None
    order = np.argsort(energies, kind="stable")
    order = order[energies[order] <= energies[order[0]] + recipe.energy_window]
    heavy = Chem.RemoveHs(mol)
    add_conformers(heavy, coords[:, [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]])
    kept = []
    for i in order.tolist():  # GetBestRMS aligns conformer i in place: harmless, RMSDs are alignment-free
        if all(rdMolAlign.GetBestRMS(heavy, heavy, i, k) > recipe.prune_rmsd for k in kept):
            kept.append(i)
        if len(kept) == recipe.conformers:
            break
    rows = [kept[j % len(kept)] for j in range(recipe.conformers)]
    centred = coords[rows] - coords[rows].mean(1, keepdims=True)
    return centred.astype(np.float32), energies[rows].astype(np.float32), len(kept)


def cache_dir() -> Path:
    return Path(os.environ.get("DIFFUSEKIT_CACHE") or "~/.cache/diffusekit").expanduser() / "molecules"


def _load_or_build(recipe: MoleculeRecipe, progress: bool, threads: int | None):
    return cached_arrays(cache_dir() / recipe.key(), lambda: _build(recipe, progress, threads or os.cpu_count() or 1))


def _build(recipe: MoleculeRecipe, progress: bool, threads: int):
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    source, dropped = source_molecules(recipe.max_atoms)
    source = source[: recipe.max_molecules]
    done, skipped = [], [f"{n} source lines: {why}" for why, n in sorted(dropped.items())]
    bar = tqdm(source, desc="molecules: reference conformers (first use only)", unit="mol", disable=not progress)
    for nci_id, smiles in bar:
        ref = reference_ensemble(smiles, recipe, threads)
        if ref is None:
            skipped.append(f"NCI {nci_id} {smiles}: ETKDG or MMFF failed")
        else:
            done.append((nci_id, smiles, ref))
    if len(done) < 2:
        raise DataError(f"molecules: only {len(done)} molecules built; need at least 2 for a train/test split")
    A = max(len(ref[0][0]) for _, _, ref in done)
    graphs = [mol_to_graph(smiles, A) for _, smiles, _ in done]
    coords = np.zeros((len(done), recipe.conformers, A, 3), np.float32)
    for m, (_, _, ref) in enumerate(done):
        coords[m, :, : ref[0].shape[1]] = ref[0]
    arrays = {"atoms": torch.stack([g[0] for g in graphs]).numpy(),
              "bonds": torch.stack([g[1] for g in graphs]).numpy().astype(np.uint8), "coords": coords,
              "energies": np.stack([ref[1] for _, _, ref in done]),
              "n_distinct": np.array([ref[2] for _, _, ref in done], np.int64)}
    perm = np.random.default_rng(recipe.seed).permutation(len(done))
    n_test = min(len(done) - 1, max(1, round(len(done) * recipe.test_fraction)))
    meta = {"recipe": dataclasses.asdict(recipe), "recipe_version": RECIPE_VERSION, "source": str(SOURCE),
            "source_sha1": _file_sha1(SOURCE), "rdkit": rdBase.rdkitVersion, "atom_types": list(ATOM_TYPES),
            "units": "Å", "centre": "plain mean of the real atoms, hydrogens included",
            "smiles": [s for _, s, _ in done], "nci_ids": [i for i, _, _ in done],
            "test": sorted(perm[:n_test].tolist()), "skipped": skipped,
            "build_seconds": round(time.perf_counter() - t0, 1)}
    return arrays, meta


def _file_sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


__all__ = ["MoleculeDataset", "MoleculeRecipe", "SCALE", "SOURCE", "cache_dir", "load_molecules", "load_training_molecules", "mol_to_graph",
           "reference_ensemble", "source_molecules", "to_rdkit", "write_sdf", "write_xyz"]
