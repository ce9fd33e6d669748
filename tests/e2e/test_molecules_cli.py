"""Molecules through the command line, as a user runs them: train on a tiny recipe of the built-in `molecules`
-> sample SMILES (npz in Å, an SD file RDKit reads back, XYZ, a picture) -> eval (COV-R / MAT-R beside ETKDG) ->
show -> info; and the one-line errors of SMILES the model cannot take, with nothing written."""

import json

import numpy as np
import pytest
from PIL import Image

Chem = pytest.importorskip("rdkit.Chem")

from diffusekit.cli import main  # noqa: E402
from diffusekit.data.molgraph import mol_to_graph  # noqa: E402

RECIPE = {"max_molecules": 12, "conformers": 2, "embed": 4}


@pytest.fixture(scope="module")
def run(dk, own_cache, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mol")
    (folder / "c.json").write_text(json.dumps({"data_options": RECIPE, "num_grid": 8, "sample_steps": 2}))
    dk("train", "--data", "molecules", "--model", "tiny", "--steps", "3", "--batch-size", "8", "--config",
       folder / "c.json", "--out", folder / "run", "--no-progress")
    return folder / "run"


def test_train_records_the_egnn_and_the_molecules(run):
    info = json.loads((run / "run.json").read_text())
    assert info["arch"] == "molecules" and info["net"]["width"] == 16 and "unet" not in info
    d = info["data"]
    assert d["kind"] == "molecules" and d["atom_types"] == ["H", "C", "N", "O", "F"] and d["scale"] == 1.8
    assert d["recipe"]["max_molecules"] == 12 and len(d["examples"]) == 8
    assert Image.open(run / "samples" / "latest.png").size[0] > 8 * 100  # 8 example molecules a row


def test_sample_writes_angstrom_an_sdf_rdkit_reads_and_xyz(dk, run, tmp_path):
    dk("sample", run, "--smiles", "CCO", "--smiles", "c1ccncc1", "--num", "2", "--steps", "3", "--out",
       tmp_path / "s.npz", "--sdf", tmp_path / "s.sdf", "--xyz", tmp_path / "xyz", "--grid", tmp_path / "s.png")
    z = np.load(tmp_path / "s.npz")
    A = json.loads((run / "run.json").read_text())["data"]["shape"][1]
    assert z["coords"].dtype == np.float32 and z["coords"].shape == (4, A, 3)
    assert z["smiles"].tolist() == ["CCO", "CCO", "c1ccncc1", "c1ccncc1"]
    assert np.array_equal(z["atoms"][2], mol_to_graph("c1ccncc1", A)[0].numpy())
    real = z["atoms"] > 0
    centres = [z["coords"][i][real[i]].mean(0) for i in range(4)]  # centred on the real atoms, 0 at padding
    assert np.all(z["coords"][~real] == 0) and np.abs(centres).max() < 1e-3
    mols = list(Chem.SDMolSupplier(str(tmp_path / "s.sdf"), removeHs=False))
    assert [m.GetProp("_Name") for m in mols] == z["smiles"].tolist()
    for m, coords, atoms in zip(mols, z["coords"], z["atoms"]):
        assert [a.GetSymbol() for a in m.GetAtoms()] == ["HCNOF"[t - 1] for t in atoms[atoms > 0]]
        assert np.allclose(m.GetConformer().GetPositions(), coords[atoms > 0], atol=1e-3)  # SDF: 4 decimals
    assert Chem.MolToSmiles(Chem.RemoveHs(mols[3])) == "c1ccncc1"
    assert len(list((tmp_path / "xyz").glob("*.xyz"))) == 4 and Image.open(tmp_path / "s.png").format == "PNG"


def test_eval_prints_cov_mat_beside_etkdg(run, tmp_path, capsys):
    assert main(["eval", str(run), "--steps", "2", "--json-out", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "model: COV-R" in out and "ETKDG: COV-R" in out
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["molecules"] == 1 and res["ratio"] == 2 and 0 <= res["model"]["cov_mean"] <= 1
    assert res["etkdg"]["mat_mean"] < 1.0  # ETKDG on a tiny molecule is close to its MMFF reference


def test_show_and_info(run, capsys):  # in this process: the same code as the command, without a start-up
    assert main(["show", str(run), "--steps", "2", "--num", "2"]) == 0
    for name in ("forward.png", "reverse.png", "samples.png"):
        assert Image.open(run / "show" / name).format == "PNG"
    assert main(["info", str(run)]) == 0 and "EGNN" in capsys.readouterr().out


@pytest.mark.parametrize("smiles, words", [("C1CC", "cannot parse"), ("CCS", "element S"),
                                           ("CCCCCCCCCCCCCC", "more than max_atoms")])
def test_a_smiles_the_model_cannot_take_is_one_line_and_writes_nothing(run, tmp_path, capsys, smiles, words):
    rc = main(["sample", str(run), "--smiles", smiles, "--out", str(tmp_path / "s.npz"), "--sdf",
               str(tmp_path / "s.sdf")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and words in err and "\n" not in err
    assert not list(tmp_path.iterdir())
