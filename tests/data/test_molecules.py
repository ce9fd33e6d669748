"""`molecules`: the graph layout, RDKit round trips, SDF/XYZ files that RDKit reads back, one-line DataErrors, and a
tiny cached build (6 molecules, 2 conformers each) in a temporary DIFFUSEKIT_CACHE."""

import time

import numpy as np
import pytest
import torch

pytest.importorskip("rdkit")
from rdkit import Chem  # noqa: E402

from diffusekit.data.dataset import DataError, InMemoryDataset  # noqa: E402
from diffusekit.data.molecules import (SCALE, MoleculeRecipe, cache_dir, load_molecules, mol_to_graph,  # noqa: E402
                                       to_rdkit, write_sdf, write_xyz)
from diffusekit.data.molgraph import add_conformers, as_mol, embed_conformers  # noqa: E402

TINY = MoleculeRecipe(max_molecules=6, conformers=2, embed=4)
SMILES = ["CCO", "c1ccc[nH]1", "O=C(O)c1ccncc1", "C#CC(F)(F)F", "O=c1cc[nH]cc1", "CC(C)(C)OC(=O)N"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(train, test, seconds of the first build, cache folder) of the TINY recipe in a fresh cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIFFUSEKIT_CACHE", str(tmp_path_factory.mktemp("cache")))
        t0 = time.perf_counter()
        train = load_molecules("train", TINY, progress=False)
        build_s = time.perf_counter() - t0
        yield train, load_molecules("test", TINY, progress=False), build_s, cache_dir()


@pytest.mark.parametrize("smiles", SMILES)
def test_graph_round_trips_through_rdkit(smiles):
    atoms, bonds = mol_to_graph(smiles, max_atoms=30)
    n = Chem.AddHs(Chem.MolFromSmiles(smiles)).GetNumAtoms()
    assert atoms.shape == (30,) and bonds.shape == (30, 30) and atoms.dtype == bonds.dtype == torch.int64
    assert (atoms[:n] > 0).all() and (atoms[n:] == 0).all() and (bonds[n:] == 0).all()
    assert torch.equal(bonds, bonds.T) and bonds.diagonal().eq(0).all()
    back = Chem.RemoveHs(to_rdkit(atoms, bonds))
    assert Chem.MolToSmiles(back) == Chem.MolToSmiles(Chem.MolFromSmiles(smiles))


def test_aromatic_bonds_are_type_4():
    atoms, bonds = mol_to_graph("c1ccccc1")
    assert (bonds[:6, :6] == 4).sum() == 12 and (bonds == 1).sum() == 12  # 6 ring bonds, 6 C-H, both directions


@pytest.mark.parametrize("bad, words", [("C1CC", ["'C1CC'", "cannot parse"]), ("", ["''", "empty"]),
                                        ("C" * 12, ["'CCCCCCCCCCCC'", "38 atoms", "max_atoms=30"]),
                                        ("CCCl", ["'CCCl'", "Cl"]), ("[NH4+]", ["'[NH4+]'", "charged"])])
def test_bad_molecules_raise_one_line_data_errors(bad, words):
    with pytest.raises(DataError) as e:
        mol_to_graph(bad, max_atoms=30)
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


def test_invalid_graph_raises_data_error():
    atoms, bonds = mol_to_graph("CCO")
    bonds[0, 1] = bonds[1, 0] = 3  # a triple bond on a carbon that already has 3 hydrogens: pentavalent
    with pytest.raises(DataError, match="not a valid molecule"):
        to_rdkit(atoms, bonds)


def _conformers(smiles, k=3):
    mol = as_mol(smiles)
    coords, _ = embed_conformers(mol, k, seed=11)
    return mol, coords


def test_sdf_reads_back_with_the_same_atoms_and_coordinates(tmp_path):
    mol, coords = _conformers("O=C(O)c1ccncc1")
    atoms, bonds = mol_to_graph("O=C(O)c1ccncc1", max_atoms=20)  # padded: the writer drops the padding
    padded = np.zeros((len(coords), 20, 3))
    padded[:, : mol.GetNumAtoms()] = coords
    path = write_sdf(tmp_path / "c.sdf", atoms, bonds, padded, names=["a", "b", "c"])
    back = list(Chem.SDMolSupplier(str(path), removeHs=False))
    assert [m.GetProp("_Name") for m in back] == ["a", "b", "c"]
    for m, c in zip(back, coords):
        assert [a.GetSymbol() for a in m.GetAtoms()] == [a.GetSymbol() for a in mol.GetAtoms()]
        assert np.abs(m.GetConformer().GetPositions() - c).max() < 1e-4  # SDF keeps 4 decimals
        assert Chem.MolToSmiles(m) == Chem.MolToSmiles(mol)


def test_xyz_reads_back_with_the_same_atoms_and_coordinates(tmp_path):
    mol, coords = _conformers("CC(C)(C)OC(=O)N", k=1)
    atoms, _ = mol_to_graph("CC(C)(C)OC(=O)N")
    back = Chem.MolFromXYZFile(str(write_xyz(tmp_path / "c.xyz", atoms, coords[0], comments=["t"])))
    assert [a.GetSymbol() for a in back.GetAtoms()] == [a.GetSymbol() for a in mol.GetAtoms()]
    assert np.abs(back.GetConformer().GetPositions() - coords[0]).max() < 1e-5


def test_add_conformers_checks_the_atom_count():
    with pytest.raises(DataError, match="3 atoms"):
        add_conformers(Chem.MolFromSmiles("CCO"), np.zeros((1, 4, 3)))


def test_tiny_build_layout(tiny):
    train, test, _, _ = tiny
    assert isinstance(train, InMemoryDataset) and train.labels is None and train.scale == SCALE
    A = train.x.shape[2]
    assert test.x.shape[2] == A == int(max((train.atoms > 0).sum(1).max(), (test.atoms > 0).sum(1).max()))
    assert len(train.smiles) + len(test.smiles) == 6 and len(test.smiles) == 1  # 10 % of 6, at least 1
    assert not set(train.smiles) & set(test.smiles)  # split by molecule
    for ds in (train, test):
        assert ds.x.dtype == torch.float32 and ds.x.shape == (len(ds.smiles) * TINY.conformers, 3, A)
        assert torch.equal(ds.mol_index, torch.arange(len(ds.smiles)).repeat_interleave(TINY.conformers))
        atoms, bonds = ds.graph(torch.arange(len(ds)))
        real = (atoms > 0)[:, None]  # (N, 1, A)
        assert (ds.x * ~real).abs().max() == 0  # padding is exactly 0
        mean = (ds.x * real).sum(2) / real.sum(2)
        assert mean.abs().max() < 1e-5  # centred on the plain mean of the real atoms
        for m, s in enumerate(ds.smiles):
            a, b = mol_to_graph(s, A)
            assert torch.equal(ds.atoms[m], a) and torch.equal(ds.bonds[m], b)
            ref = ds.references[m]
            assert 1 <= len(ref) <= TINY.conformers and ref.shape[1:] == (int((a > 0).sum()), 3)
            rows = ds.angstrom(ds.x[ds.mol_index == m])[:, : ref.shape[1]].double().numpy()
            assert np.abs(rows[: len(ref)] - ref).max() < 1e-5  # the distinct references come first


def test_second_load_comes_from_the_cache(tiny, monkeypatch):
    train, _, build_s, folder = tiny
    monkeypatch.setenv("DIFFUSEKIT_CACHE", str(folder.parent))
    t0 = time.perf_counter()
    again = load_molecules("train", TINY, progress=False)
    assert time.perf_counter() - t0 < max(0.5, build_s / 2)
    assert torch.equal(again.x, train.x) and again.smiles == train.smiles
    assert sorted(p.suffix for p in folder.iterdir()) == [".json", ".safetensors"]


def test_recipe_key_names_every_setting():
    keys = {MoleculeRecipe().key(), MoleculeRecipe(conformers=4).key(), MoleculeRecipe(seed=1).key(), TINY.key()}
    assert len(keys) == 4 and all(k.startswith("nci-v") for k in keys)


def test_bad_split_is_a_data_error():
    with pytest.raises(DataError, match="'valid'"):
        load_molecules("valid", TINY)


def test_a_batch_of_model_rows_writes_to_sdf(tiny, tmp_path):
    """The path a generator's samples take: x (B, 3, A) -> Å (B, A, 3) -> one SD record per row."""
    train = tiny[0]
    rows = torch.tensor([0, len(train) - 1])
    atoms, bonds = train.graph(rows)
    coords = train.angstrom(train.x[rows])
    back = list(Chem.SDMolSupplier(str(write_sdf(tmp_path / "rows.sdf", atoms, bonds, coords)), removeHs=False))
    for m, a, c in zip(back, atoms, coords):
        n = int((a > 0).sum())
        assert m.GetNumAtoms() == n and np.abs(m.GetConformer().GetPositions() - c[:n].numpy()).max() < 1e-4
