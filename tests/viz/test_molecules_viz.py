"""The conformer renderer: element colours, bonds, padding and non-finite atoms left out, grids and strips."""

import numpy as np
import pytest
import torch

from diffusekit.viz.molecules import COLOURS, molecule_grid, render_molecule, save_molecule_strip


def water_like():
    """O at the centre bonded to two H, plus two padding atoms holding garbage (NaN and a far value)."""
    x = torch.tensor([[0.0, 0.8, -0.8, float("nan"), 50.0], [0.0, 0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    atoms = torch.tensor([4, 1, 1, 0, 0])  # O H H, padding
    bonds = torch.zeros(5, 5, dtype=torch.long)
    bonds[0, 1] = bonds[1, 0] = bonds[0, 2] = bonds[2, 0] = 1
    return x, atoms, bonds


def test_atoms_take_their_element_colour_and_padding_is_not_drawn():
    x, atoms, bonds = water_like()
    img = render_molecule(x, atoms, bonds, size=64, azim=0, elev=0)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    centre = img[30:34, 30:34].reshape(-1, 3).astype(int)
    assert (np.abs(centre - COLOURS[4]).sum(1) < 90).any()  # the oxygen, red (darkened a little by depth)
    assert (img[:, 56:] == 255).all()  # nothing drawn on the right edge: the padding atom at x = 50 is skipped


def test_a_grid_and_a_strip_of_conformers(tmp_path):
    x, atoms, bonds = water_like()
    grid = molecule_grid(x[None].repeat(3, 1, 1), atoms[None].repeat(3, 1), bonds[None].repeat(3, 1, 1), ncol=3,
                         size=48, labels=["a", "b", "c"])
    assert grid.size[0] > 3 * 48 and grid.size[1] > 48
    path = save_molecule_strip([x[None], x[None] * 2], atoms[None], bonds[None], tmp_path / "s.png", titles=["0", "1"],
                               size=48)
    assert path.exists()
    with pytest.raises(ValueError, match="labels"):
        molecule_grid(x[None], atoms[None], bonds[None], labels=["a", "b"])
