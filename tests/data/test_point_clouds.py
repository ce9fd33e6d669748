"""Point clouds: the `shapes3d` recipe (area-uniform surfaces, splits, determinism) and a user's folder of
.ply / .npy / .xyz files (our own PLY reader, resampling, labels, bad files)."""

import numpy as np
import pytest
import torch

from diffusekit.data import DataError, load_data
from diffusekit.data.points import (PointCloudDataset, load_cloud_folder, make_shapes3d, random_rotations,
                                    read_cloud, read_ply, write_ply)


def test_shapes3d_is_deterministic_labelled_and_in_the_unit_ball():
    a, b = make_shapes3d(per_class=4, points=256, seed=3), make_shapes3d(per_class=4, points=256, seed=3)
    assert torch.equal(a.x, b.x) and a.x.shape == (20, 3, 256)
    assert a.labels.tolist() == [0, 1, 2, 3, 4] * 4 and a.class_names[1] == "torus"
    assert not torch.equal(a.x, make_shapes3d(per_class=4, points=256, seed=4).x)
    norms = a.x.norm(dim=1)  # (N, P)
    assert torch.allclose(norms.amax(1), torch.ones(20), atol=1e-6)  # farthest point at distance 1
    assert a.x.mean(2).abs().max() < 1e-6  # centroids at the origin
    assert a.kind == "points" and "20 clouds of 256 points" in a.describe()


def test_box_and_cylinder_points_lie_on_the_surface_spread_by_area():
    from diffusekit.data.points import SOLIDS

    box = SOLIDS["box"](1, 4000, np.random.default_rng(0))[0]  # (P, 3) in the solid's own frame, centred
    half = np.abs(box).max(0)
    assert (np.abs(np.abs(box) - half) < 1e-12).any(1).all()  # every point on a face
    # faces are hit in proportion to their area: the share of points on the x faces is area_x / total
    area = np.array([half[1] * half[2], half[0] * half[2], half[0] * half[1]])
    share = np.array([(np.abs(np.abs(box[:, k]) - half[k]) < 1e-12).mean() for k in range(3)])
    assert np.allclose(share, area / area.sum(), atol=0.03)  # 4,000 points: 3 sigma is about 0.022
    cyl = SOLIDS["cylinder"](1, 4000, np.random.default_rng(1))[0]  # about z: side rho = r, caps |z| = h/2
    rho, z = np.hypot(cyl[:, 0], cyl[:, 1]), cyl[:, 2]
    side = np.abs(rho - rho.max()) < 1e-12
    assert (side | (np.abs(np.abs(z) - np.abs(z).max()) < 1e-12)).all()
    r, h = rho.max(), 2 * np.abs(z).max()
    assert abs(side.mean() - (2 * np.pi * r * h) / (2 * np.pi * r * h + 2 * np.pi * r * r)) < 0.03
    torus = SOLIDS["torus"](1, 4000, np.random.default_rng(2))[0]  # ring radius 1: (rho - 1)^2 + z^2 = r^2
    tube = np.hypot(np.hypot(torus[:, 0], torus[:, 1]) - 1, torus[:, 2])
    assert np.allclose(tube, tube[0])
    # the outer half of the tube has more area than the inner: share (pi + 2r)/(2 pi) of the points
    r = tube[0]
    assert abs((np.hypot(torus[:, 0], torus[:, 1]) > 1).mean() - (np.pi + 2 * r) / (2 * np.pi)) < 0.03


def test_random_rotations_are_proper_and_uniform():
    q = random_rotations(2000, np.random.default_rng(0))
    assert np.allclose(q @ q.transpose(0, 2, 1), np.eye(3), atol=1e-10) and np.allclose(np.linalg.det(q), 1)
    # Haar: the rotated z axis is uniform on the sphere, so each of its coordinates has mean 0 and variance 1/3
    z = q[:, :, 2]
    assert np.abs(z.mean(0)).max() < 0.06 and np.allclose((z ** 2).mean(0), 1 / 3, atol=0.03)


def test_builtin_splits_are_different_sets():
    train, test = load_data("shapes3d"), __import__("diffusekit.data.points", fromlist=["x"]).load_shapes3d("test")
    assert train.x.shape == (5000, 3, 1024) and test.x.shape == (1000, 3, 1024)
    assert not torch.equal(train.x[:5], test.x[:5])


def test_ply_ascii_and_binary_round_trip(tmp_path):
    pts = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    write_ply(tmp_path / "a.ply", pts.T)  # (3, P) is accepted as well as (P, 3)
    assert np.allclose(read_ply(tmp_path / "a.ply"), pts)
    lines = ["ply", "format ascii 1.0", "comment hand-written", "element vertex 3", "property double x",
             "property double y", "property double z", "property uchar red", "element face 1",
             "property list uchar int vertex_indices", "end_header", "0 0 0 255", "1 0 0 0", "0 1 0 7", "3 0 1 2"]
    (tmp_path / "b.ply").write_text("\n".join(lines) + "\n")
    assert read_ply(tmp_path / "b.ply").tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0]]
    big = b"ply\nformat binary_big_endian 1.0\nelement vertex 2\nproperty float y\nproperty float x\n" \
          b"property float z\nend_header\n" + np.array([[1, 2, 3], [4, 5, 6]], ">f4").tobytes()
    (tmp_path / "c.ply").write_bytes(big)
    assert read_ply(tmp_path / "c.ply").tolist() == [[2, 1, 3], [5, 4, 6]]  # columns by name, not order


def test_cloud_folder_with_classes_resampling_and_formats(tmp_path):
    rng = np.random.default_rng(1)
    for cls in ("chairs", "mugs"):
        (tmp_path / cls).mkdir()
    np.save(tmp_path / "chairs" / "a.npy", rng.normal(size=(300, 3)))
    write_ply(tmp_path / "chairs" / "b.ply", rng.normal(size=(100, 3)))
    np.savetxt(tmp_path / "mugs" / "c.xyz", rng.normal(size=(200, 6)))  # extra columns (normals) are ignored
    ds = load_data(tmp_path)
    assert isinstance(ds, PointCloudDataset) and ds.x.shape == (3, 3, 200)  # the median count (100, 200, 300)
    assert ds.class_names == ["chairs", "mugs"] and ds.labels.tolist() == [0, 0, 1]
    assert torch.allclose(ds.x.norm(dim=1).amax(1), torch.ones(3), atol=1e-6)
    assert any("resampled" in n for n in ds.notes)
    assert load_cloud_folder(tmp_path, points=64).x.shape == (3, 3, 64)


@pytest.mark.parametrize("name, content, message", [
    ("nan.npy", np.array([[0, 0, 0], [np.nan, 1, 1], [1, 1, 1]]), "NaN or inf"),
    ("two.npy", np.zeros((2, 3)), "at least 3"),
    ("flat.npy", np.zeros((10, 2)), "(P, 3)"),
    ("empty.xyz", "", "at least 3"),
    ("junk.ply", b"PK\x03\x04 not a ply", "not a PLY"),
    ("short.ply", b"ply\nformat binary_little_endian 1.0\nelement vertex 100\nproperty float x\nproperty float y\n"
                  b"property float z\nend_header\n" + bytes(12), "truncated"),
    ("nohead.ply", b"ply\nformat ascii 1.0\nelement vertex 1\n", "never ends"),
])
def test_bad_cloud_files_are_one_line_errors_that_name_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    if isinstance(content, np.ndarray):
        np.save(path, content)
    else:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError, match=message) as e:
        read_cloud(path)
    assert name in str(e.value) and "\n" not in str(e.value)


def test_empty_folder_and_pickled_npy_are_refused(tmp_path):
    (tmp_path / "x.npy").write_bytes(b"")
    with pytest.raises(DataError, match="x.npy"):
        load_data(tmp_path)
    np.save(tmp_path / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="x.npy"):
        read_cloud(tmp_path / "x.npy")
