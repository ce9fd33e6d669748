"""What a molecule run's samples need beyond `TrainedModel`: the graphs they are drawn for (`graphs_for`: SMILES or
graphs, checked against the model) and the files they are written to (`write_conformers`: npz in Å, SD file, XYZ,
a picture). The layout of graphs and coordinates is `diffusekit.data.molgraph`'s."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .data.molgraph import ATOM_TYPES, mol_to_graph, to_rdkit, write_sdf, write_xyz


def graphs_for(data: dict, num: int, smiles=None, graphs=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(atoms (num, A), bonds (num, A, A)) for `num` samples of a model whose run.json "data" record is `data`:
    `smiles` (a string or list) or `graphs` (atoms (K, A), bonds (K, A, A)) taken in turn; neither: the run's
    example molecules. One-line errors for a SMILES RDKit cannot parse, one with more than A atoms or with
    elements outside the model's atom types, and for more molecules than samples."""
    if smiles is not None and graphs is not None:
        raise ValueError("give smiles or graphs, not both")
    A, types = data["shape"][-1], data["atom_types"]
    if tuple(types) != ATOM_TYPES:
        raise ValueError(f"this model knows the atom types {types}; this diffusekit's graphs use {ATOM_TYPES}")
    if graphs is None:
        smiles = data["examples"] if smiles is None else smiles_list(smiles)
        rows = [mol_to_graph(s, A) for s in smiles]  # DataError names a bad SMILES
        graphs = torch.stack([a for a, _ in rows]), torch.stack([b for _, b in rows])
    atoms, bonds = (torch.as_tensor(t, dtype=torch.long) for t in graphs)
    if atoms.ndim != 2 or atoms.shape[1] != A or bonds.shape != (*atoms.shape, A):
        raise ValueError(f"graphs must be atoms (K, {A}) and bonds (K, {A}, {A}); got {tuple(atoms.shape)} and "
                         f"{tuple(bonds.shape)}")
    if len(atoms) > num:
        raise ValueError(f"{len(atoms)} molecules for {num} samples: ask for at least {len(atoms)} (they are taken "
                         f"in turn)")
    pick = torch.arange(num) % len(atoms)
    return atoms[pick], bonds[pick]


def smiles_list(smiles) -> list[str]:
    """A SMILES string or a non-empty list of them -> list; a one-line error otherwise."""
    if isinstance(smiles, str):
        return [smiles]
    if not isinstance(smiles, (list, tuple)) or not smiles or not all(isinstance(s, str) for s in smiles):
        raise ValueError(f"smiles must be a string or a non-empty list of strings; got {smiles!r:.80}")
    return list(smiles)


def write_conformers(model, x: torch.Tensor, out: Path, grid=None, smiles=None, sdf=None, xyz=None) -> list[Path]:
    """`write_samples` for a molecule model's conformers x (N, 3, A) in model units, drawn for `smiles` (or the
    run's examples): out .npz (`coords` float32 (N, A, 3) Å, `atoms`, `bonds`, `smiles`, `atom_types`), an SD
    file, a folder of .xyz files, a picture. Every graph is checked before anything is written."""
    atoms, bonds = model.graphs_for(len(x), smiles)
    given = model.info["data"]["examples"] if smiles is None else smiles_list(smiles)
    names = [given[i % len(given)] for i in range(len(x))]
    for a, b in {n: (a, b) for n, a, b in zip(names, atoms, bonds)}.values():
        to_rdkit(a, b)  # a graph RDKit cannot sanitise (DataError) fails here, before any file exists
    coords = (x.float().transpose(1, 2) * model.info["data"]["scale"]).numpy()  # (N, A, 3) Å
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, coords=coords.astype(np.float32), atoms=atoms.numpy().astype(np.int8),
             bonds=bonds.numpy().astype(np.int8), smiles=np.array(names, dtype=np.str_),
             atom_types=np.array(ATOM_TYPES, dtype=np.str_))
    written = [out]
    if sdf is not None:
        Path(sdf).parent.mkdir(parents=True, exist_ok=True)
        written.append(write_sdf(sdf, atoms, bonds, coords, names=names))
    if xyz is not None:
        Path(xyz).mkdir(parents=True, exist_ok=True)
        written += [write_xyz(Path(xyz) / f"sample-{i:04d}.xyz", atoms[i], coords[i], [names[i]])
                    for i in range(len(x))]
    if grid is not None:
        from .viz.molecules import save_molecule_grid

        grouped = len(x) // len(set(names))  # the command line's order, molecule by molecule: one row each
        ncol = grouped if names == [n for n in dict.fromkeys(names) for _ in range(grouped)] else len(given)
        labels = [n if len(n) <= 18 else n[:17] + "…" for n in names]
        written.append(save_molecule_grid(x, atoms, bonds, grid, ncol=min(ncol, len(x)), labels=labels))
    return written


__all__ = ["graphs_for", "smiles_list", "write_conformers"]
