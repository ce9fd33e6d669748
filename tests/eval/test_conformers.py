"""COV-R / MAT-R: heavy-atom RMSD after the best alignment is 0 for a moved copy and exact for a known perturbation,
symmetric atoms are matched, identical sets score COV-R 100% and MAT-R 0, and the ETKDG baseline is seeded apart
from the references (so it cannot copy them)."""

import numpy as np
import pytest

pytest.importorskip("rdkit")
from diffusekit.data.molecules import MoleculeRecipe, load_molecules, mol_to_graph, reference_ensemble  # noqa: E402
from diffusekit.data.molgraph import as_mol, embed_conformers  # noqa: E402
from diffusekit.eval.conformers import (ConformerScores, coverage_matching, etkdg_baseline, etkdg_scores,  # noqa
                                        rmsd_matrix, score_conformers)

SMILES = "CC(C)Cc1ccc(O)cc1"  # 4-isobutylphenol: a symmetric isopropyl end, a ring that can flip


def _conformers(k=3, seed=5):
    coords, _ = embed_conformers(as_mol(SMILES), k, seed=seed)
    atoms, bonds = mol_to_graph(SMILES)
    return atoms, bonds, coords


def _rotation(seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))  # proper: RMSD alignment allows no reflection


def test_rmsd_of_a_moved_copy_is_zero():
    atoms, bonds, coords = _conformers()
    moved = coords @ _rotation().T + np.array([3.0, -1.0, 8.0])
    r = rmsd_matrix(atoms, bonds, coords, moved)
    # 1e-4 Å: RDKit's alignment leaves ~1e-10 Å^2 of rounding in the mean square, i.e. ~1e-5 Å after the sqrt
    assert np.abs(np.diag(r)).max() < 1e-4 and (r + np.eye(3) > 1e-2).all()  # distinct conformers differ


def test_rmsd_of_a_scaled_copy_is_known():
    """Y = (1 + s) X about the heavy atoms' centroid: the best alignment is the identity (X^T Y is symmetric
    positive definite, and no symmetry permutation does better), so RMSD = s * rms distance to the centroid."""
    atoms, bonds, coords = _conformers(k=1)
    heavy = (atoms > 1).numpy()
    c = coords[0][heavy].mean(0)
    s = 0.1
    scaled = (coords[0] - c) * (1 + s) + c
    expect = s * np.sqrt(((coords[0][heavy] - c) ** 2).sum(1).mean())
    assert rmsd_matrix(atoms, bonds, coords[:1], scaled[None])[0, 0] == pytest.approx(expect, rel=1e-6)


def test_rmsd_matches_symmetric_atoms():
    atoms, bonds, coords = _conformers(k=1)
    swapped = coords.copy()
    swapped[0, [0, 2]] = coords[0, [2, 0]]  # the two methyl carbons of the isopropyl: same graph position
    assert rmsd_matrix(atoms, bonds, coords, swapped)[0, 0] < 1e-4


def test_hydrogens_do_not_count():
    atoms, bonds, coords = _conformers(k=1)
    moved = coords.copy()
    moved[0, atoms.numpy() == 1] += 0.7  # hydrogens only
    assert rmsd_matrix(atoms, bonds, coords, moved)[0, 0] < 1e-4


def test_coverage_and_matching_of_a_hand_matrix():
    assert coverage_matching(np.array([[0.1, 0.9], [0.7, 0.6]]), delta=0.5) == pytest.approx((0.5, 0.35))
    assert coverage_matching(np.zeros((3, 0)))[0] == 0


def test_identical_sets_score_full_coverage_and_zero_matching():
    atoms, bonds, coords = _conformers()
    scores = score_conformers(atoms[None], bonds[None], [coords], [coords[::-1].copy()])
    assert scores.cov[0] == 1 and scores.mat[0] < 1e-4
    line = scores.format("same")
    assert line.startswith("same: COV-R 100.0% (median 100.0%), MAT-R 0.000 Å") and "1 molecules" in line


def test_etkdg_baseline_is_seeded_and_apart_from_the_references():
    a, b = etkdg_baseline(SMILES, 6, seed=0), etkdg_baseline(SMILES, 6, seed=0)
    assert a.shape == (6, as_mol(SMILES).GetNumAtoms(), 3) and np.array_equal(a, b)
    assert np.abs(etkdg_baseline(SMILES, 6, seed=1) - a).max() > 0.1
    pre = embed_conformers(as_mol(SMILES), 24, seed=0)[0]  # the naive seed 0 makes 24 copies of one conformer
    assert np.abs(pre - pre[0]).max() == 0
    ref, _, n = reference_ensemble(SMILES, MoleculeRecipe())  # its stream and the baseline's never share one
    atoms, bonds = mol_to_graph(SMILES)
    assert rmsd_matrix(atoms, bonds, ref[:n], etkdg_baseline(SMILES, 12)).min() > 1e-3


def test_etkdg_scores_on_a_tiny_held_out_set(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSEKIT_CACHE", str(tmp_path))
    test = load_molecules("test", MoleculeRecipe(max_molecules=6, conformers=2, embed=4), progress=False)
    scores = etkdg_scores(test, progress=False)
    assert isinstance(scores, ConformerScores) and len(scores.cov) == len(test.smiles)
    assert ((0 <= scores.cov) & (scores.cov <= 1)).all() and (scores.mat >= 0).all()
    assert scores.format("ETKDG").startswith("ETKDG: COV-R ")
