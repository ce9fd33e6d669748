"""Molecular graphs <-> RDKit molecules, conformer embedding, and SDF / XYZ writers.

The graph layout every molecule module shares (one molecule; a batch adds a leading B):
    atoms   (A,) int64    atom-type index into ATOM_TYPES, shifted by one: 0 = padding (no atom), 1 = H, 2 = C, ...
    bonds   (A, A) int64  0 none, 1 single, 2 double, 3 triple, 4 aromatic; symmetric, 0 on the diagonal
    coords  (n, 3) or (A, 3) float, Ångström, in the atom order of `atoms` (chemistry's layout, as RDKit's
            GetPositions; the model layout (B, 3, A) divided by a scale is `MoleculeDataset.angstrom`'s business)
Hydrogens are always explicit atoms (Chem.AddHs), so a graph carries every atom a conformer places. The atom order
is RDKit's for `Chem.AddHs(Chem.MolFromSmiles(smiles))`: heavy atoms in SMILES order, then the hydrogens.
Formal charges, radicals and stereo tags are not represented, so molecules with charges or radicals are refused
(DataError) rather than silently changed; stereo lives only in the 3-D coordinates.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from rdkit import Chem, RDLogger
from rdkit.Chem import rdDistGeom, rdForceFieldHelpers

from .dataset import DataError

RDLogger.DisableLog("rdApp.*")  # RDKit prints parse failures to stderr; we raise one-line DataErrors instead

# QM9's elements (Ramakrishnan et al. 2014): the data set's filter keeps molecules made of these only.
ATOM_TYPES = ("H", "C", "N", "O", "F")
_BOND_INDEX = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3, Chem.BondType.AROMATIC: 4}
BOND_TYPES = (None, Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE, Chem.BondType.AROMATIC)


def as_mol(mol_or_smiles) -> Chem.Mol:
    """A SMILES string or an RDKit Mol -> a sanitised Mol with explicit hydrogens (DataError on bad input)."""
    if isinstance(mol_or_smiles, str):
        mol = Chem.MolFromSmiles(mol_or_smiles)
        if mol is None:
            raise DataError(f"SMILES {mol_or_smiles!r}: RDKit cannot parse it")
    elif isinstance(mol_or_smiles, Chem.Mol):
        mol = mol_or_smiles
    else:
        raise DataError(f"expected a SMILES string or an RDKit Mol; got {type(mol_or_smiles).__name__}")
    if mol.GetNumAtoms() == 0:
        raise DataError(f"{_name(mol_or_smiles)}: empty molecule (no atoms)")
    return Chem.AddHs(mol, addCoords=mol.GetNumConformers() > 0)


def mol_to_graph(mol_or_smiles, max_atoms: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(atoms (A,), bonds (A, A)) int64 of a SMILES or Mol with hydrogens added; A = max_atoms (zero-padded), or
    the atom count when None. DataError names the input when it cannot be parsed, is empty, has more than
    max_atoms atoms, an element outside ATOM_TYPES, a formal charge or a radical."""
    mol = as_mol(mol_or_smiles)
    name, n = _name(mol_or_smiles), mol.GetNumAtoms()
    if max_atoms is not None and n > max_atoms:
        raise DataError(f"{name}: {n} atoms with hydrogens, more than max_atoms={max_atoms}")
    A = n if max_atoms is None else max_atoms
    atoms, bonds = torch.zeros(A, dtype=torch.int64), torch.zeros(A, A, dtype=torch.int64)
    for a in mol.GetAtoms():
        if a.GetSymbol() not in ATOM_TYPES:
            raise DataError(f"{name}: element {a.GetSymbol()} is not one of {', '.join(ATOM_TYPES)}")
        if a.GetFormalCharge() or a.GetNumRadicalElectrons():
            raise DataError(f"{name}: charged or radical atom {a.GetSymbol()}{a.GetIdx()} (not representable)")
        atoms[a.GetIdx()] = ATOM_TYPES.index(a.GetSymbol()) + 1
    for b in mol.GetBonds():
        if b.GetBondType() not in _BOND_INDEX:
            raise DataError(f"{name}: bond type {b.GetBondType()} is not single/double/triple/aromatic")
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        bonds[i, j] = bonds[j, i] = _BOND_INDEX[b.GetBondType()]
    return atoms, bonds


def to_rdkit(atoms, bonds, coords=None) -> Chem.Mol:
    """The sanitised RDKit Mol of a graph (padding dropped), with one conformer when `coords` (n or A, 3) Å given.

    Aromatic bonds are given back as aromatic and RDKit kekulises them on sanitising; every hydrogen is an atom,
    so no implicit ones are added (NoImplicit). DataError when the graph is not a valid molecule."""
    atoms, bonds = _np(atoms).astype(np.int64), _np(bonds).astype(np.int64)
    real = np.flatnonzero(atoms > 0)
    if len(real) == 0:
        raise DataError("to_rdkit: the graph has no atoms (all padding)")
    if atoms.max() > len(ATOM_TYPES) or bonds.max() >= len(BOND_TYPES) or bonds.min() < 0:
        raise DataError(f"to_rdkit: atom type {atoms.max()} or bond type {bonds.max()} out of range")
    sub = bonds[np.ix_(real, real)]
    aromatic = (sub == 4).any(1)
    rw = Chem.RWMol()
    for k, i in enumerate(real):
        atom = Chem.Atom(ATOM_TYPES[atoms[i] - 1])
        atom.SetNoImplicit(True)
        atom.SetIsAromatic(bool(aromatic[k]))
        rw.AddAtom(atom)
    for i, j in zip(*np.nonzero(np.triu(sub, 1))):
        rw.AddBond(int(i), int(j), BOND_TYPES[sub[i, j]])
        rw.GetBondBetweenAtoms(int(i), int(j)).SetIsAromatic(bool(sub[i, j] == 4))
    mol = rw.GetMol()
    try:
        Chem.SanitizeMol(mol)
    except Exception as e:  # RDKit raises several types (valence, kekulisation); one line either way
        raise DataError(f"to_rdkit: the graph is not a valid molecule: {str(e).splitlines()[0]}") from None
    if coords is not None:
        add_conformers(mol, _np(coords)[None], real if len(_np(coords)) == len(atoms) else None)
    return mol


def add_conformers(mol: Chem.Mol, coords, index=None) -> list[int]:
    """Add conformers (k, n, 3) Å to `mol` (rows `index` of each when the coordinates are padded); their ids."""
    coords = np.asarray(coords, dtype=np.float64)
    if index is not None:
        coords = coords[:, index]
    if coords.ndim != 3 or coords.shape[1:] != (mol.GetNumAtoms(), 3):
        raise DataError(f"coordinates of shape {coords.shape[1:]} for a molecule of {mol.GetNumAtoms()} atoms")
    ids = []
    for c in coords:
        conf = Chem.Conformer(mol.GetNumAtoms())
        conf.SetPositions(c)
        ids.append(mol.AddConformer(conf, assignId=True))
    return ids


def write_sdf(path, atoms, bonds, coords, names=None) -> Path:
    """Write conformers to an SD file: one graph (A,) / (A, A) with coords (k, A or n, 3) Å, or a batch
    (B, A) / (B, A, A) with (B, A, 3). `names` (one per record) become the title lines. Returns the path."""
    atoms, bonds, coords = _batch(atoms, bonds, coords)
    path = Path(path)
    writer = Chem.SDWriter(str(path))
    try:
        for i in range(len(coords)):
            mol = to_rdkit(atoms[i], bonds[i], coords[i])
            if names is not None:
                mol.SetProp("_Name", str(names[i]))
            writer.write(mol)
    finally:
        writer.close()
    return path


def write_xyz(path, atoms, coords, comments=None) -> Path:
    """Write conformers as (multi-frame) XYZ: per frame the atom count, a comment line, then `El x y z` in Å.
    Shapes as `write_sdf` (bonds are not part of the format). Returns the path."""
    atoms, _, coords = _batch(atoms, None, coords)
    lines = []
    for i in range(len(coords)):
        real = np.flatnonzero(atoms[i] > 0)
        xyz = coords[i][real] if len(coords[i]) == len(atoms[i]) else coords[i]
        lines += [str(len(real)), "" if comments is None else str(comments[i]).replace("\n", " ")]
        lines += [f"{ATOM_TYPES[atoms[i][j] - 1]:<2s} {x:12.6f} {y:12.6f} {z:12.6f}" for j, (x, y, z) in zip(real, xyz)]
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def rdkit_seed(tag: str, seed: int, key: str) -> int:
    """An RDKit random seed for (what, seed, molecule): a prime in [2**20, 2**21) picked by a hash.

    Not `seed` itself: in RDKit 2026.09 EmbedMultipleConfs with randomSeed s makes conformer i from seed
    s * (i + 1) (measured: conformer 1 of seed 1 is conformer 0 of seed 2), so seed 0 gives k copies of one
    conformer and small seeds for the references and for the baseline would share conformers. Two different primes
    p, q > count never meet (p * a = q * b needs q | a), and p * count stays below 2**31 (seeds near 2**31 repeat
    conformers) for count < 1024."""
    h = int.from_bytes(hashlib.sha256(f"{tag}|{seed}|{key}".encode()).digest()[:4], "little")
    p = 2**20 + h % 2**20
    while any(p % d == 0 for d in range(2, int(p**0.5) + 1)):
        p += 1
    return p


def embed_conformers(mol: Chem.Mol, count: int, seed: int, mmff: bool = False, threads: int = 1):
    """ETKDGv3 conformers (Wang et al. 2020) of `mol` (hydrogens explicit), then MMFF94 minimisation when `mmff`.

    Returns (coords (k, n, 3) float64 Å, energies (k,) kcal/mol or None); k <= count when embedding fails for some.
    Deterministic for a given seed whatever `threads` is (RDKit seeds each conformer on its own)."""
    mol = Chem.Mol(mol)
    mol.RemoveAllConformers()
    params = rdDistGeom.ETKDGv3()
    params.randomSeed, params.numThreads = seed, threads
    ids = list(rdDistGeom.EmbedMultipleConfs(mol, count, params))
    if not ids:
        return np.zeros((0, mol.GetNumAtoms(), 3)), None
    energies = None
    if mmff:
        # maxIters well above RDKit's 200: small molecules converge in a few hundred; unconverged ones are kept
        result = rdForceFieldHelpers.MMFFOptimizeMoleculeConfs(mol, numThreads=threads, maxIters=2000)
        energies = np.array([e for _, e in result])
    return np.stack([mol.GetConformer(i).GetPositions() for i in ids]), energies


def _batch(atoms, bonds, coords):
    """Broadcast one graph over k conformers, or check a batch: -> (B, A), (B, A, A) or None, (B, n, 3)."""
    atoms, coords = _np(atoms).astype(np.int64), _np(coords).astype(np.float64)
    bonds = None if bonds is None else _np(bonds).astype(np.int64)
    if coords.ndim == 2:
        coords = coords[None]
    if atoms.ndim == 1:
        atoms = np.broadcast_to(atoms, (len(coords), *atoms.shape))
        bonds = None if bonds is None else np.broadcast_to(bonds, (len(coords), *bonds.shape))
    if len(atoms) != len(coords) or coords.shape[-1] != 3:
        raise DataError(f"{len(atoms)} graphs for coordinates of shape {coords.shape}; expected (k, n, 3)")
    return atoms, bonds, coords


def _np(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _name(mol_or_smiles) -> str:
    if isinstance(mol_or_smiles, str):
        return f"SMILES {mol_or_smiles!r}"
    if isinstance(mol_or_smiles, Chem.Mol) and mol_or_smiles.HasProp("_Name"):
        return f"molecule {mol_or_smiles.GetProp('_Name')!r}"
    if isinstance(mol_or_smiles, Chem.Mol) and mol_or_smiles.GetNumAtoms():
        return f"molecule {Chem.MolToSmiles(mol_or_smiles)!r}"
    return "molecule"


__all__ = ["ATOM_TYPES", "BOND_TYPES", "add_conformers", "as_mol", "embed_conformers", "mol_to_graph",
           "rdkit_seed", "to_rdkit", "write_sdf", "write_xyz"]
