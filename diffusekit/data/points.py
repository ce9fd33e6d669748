"""Point clouds (N, 3, P): the built-in `shapes3d` and a user's folder of .ply / .npy / .xyz clouds.

A cloud is a set: P points with no grid and no order, stored channels-first like every diffusekit tensor
(x[i] is (3, P): rows x, y, z). Networks for it must be permutation-equivariant (`diffusekit.nets.points`).

shapes3d (procedural, numpy default_rng(seed); the same arguments give the same tensor). Each cloud is P points
sampled uniformly by area from the surface of one solid, 5 classes with random proportions:
    ellipsoid  semi-axes a, b, c uniform in [0.5, 1]; area-uniform by rejection (accept a point u of the unit
               sphere with probability |grad| / max, the ellipsoid's area element relative to the sphere's)
    torus      tube radius / ring radius r / R uniform in [0.2, 0.5] (R = 1)
    box        sides uniform in [0.4, 1]; a face chosen by its area, then uniform on it
    cylinder   radius uniform in [0.25, 0.6], height uniform in [0.5, 1.6]; side and caps by area
    cone       base radius uniform in [0.3, 0.8], height uniform in [0.5, 1.6]; side (s ~ sqrt(u) along the
               slant: area grows linearly with the distance from the apex) and base by area
then a uniformly random rotation (QR of a Gaussian matrix with the sign fixed: Haar on SO(3)), the centroid moved
to the origin, and the cloud scaled so its farthest point is at distance 1 (every cloud fills the unit ball, so
the data's scale is fixed and [-1, 1] holds). Splits are separate seeds: train seed 0 (1,000 per class), test seed
1 (200 per class), for evaluation against clouds no model has seen.

A user's folder: every .ply, .npy or .xyz file under it (any depth, sorted; hidden files ignored), one cloud each:
    .ply   read by our own reader (no trimesh): ascii, binary_little_endian and binary_big_endian, the vertex
           element's x, y, z properties (any numeric type); faces and other elements are ignored.
    .npy   an array (P, 3) of any float or int type (read without pickle).
    .xyz   text, one point per line: x y z (further columns ignored).
Each cloud is resampled to `points` points (default: the median point count of the files, at most MAX_POINTS;
a seeded random subset, with repetition where a file has fewer),
centred and scaled to the unit ball as above (noted). Sub-folders become classes as for image folders. A file
with NaN/inf, fewer than 3 points or not 3 coordinates is a DataError that names it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from .arrays import check_array_file
from .dataset import DataError, InMemoryDataset, median_int
from .files import check_file, check_fits, folder_labels, list_files

CLOUD_EXTENSIONS = (".ply", ".npy", ".xyz")
SHAPES3D_CLASSES = ["ellipsoid", "torus", "box", "cylinder", "cone"]
DEFAULT_POINTS = 1024  # PointFlow and PVD evaluate at 2,048; 1,024 halves the cost on a CPU and keeps the shape
MAX_POINTS = 2048  # a user's folder: the median point count of its files, capped here (PointFlow's count)
SPLITS = {"train": (0, 1000), "test": (1, 200)}  # split -> (seed, clouds per class)


@dataclass(repr=False)
class PointCloudDataset(InMemoryDataset):
    """An InMemoryDataset of point clouds: x (N, 3, P). `kind` tells the trainer to build a set network."""

    kind: ClassVar[str] = "points"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.x.ndim != 3 or self.x.shape[1] != 3:
            raise DataError(f"{self.name}: point clouds are (N, 3, P); got {tuple(self.x.shape)}")
        if not torch.isfinite(self.x).all():
            raise DataError(f"{self.name}: the clouds hold NaN or inf coordinates")

    def describe(self) -> str:
        return super().describe().replace(f" x {self.x.shape[1]} x {self.x.shape[2]}",
                                          f" clouds of {self.x.shape[2]} points", 1)


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3, 3) rotations, uniform (Haar) on SO(3): QR of a Gaussian matrix, signs fixed by R's diagonal
    (Mezzadri 2007), then a reflection undone where det = -1."""
    q, r = np.linalg.qr(rng.standard_normal((n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[np.linalg.det(q) < 0, :, 0] *= -1
    return q


def _ellipsoid(n: int, p: int, rng) -> np.ndarray:
    abc = rng.uniform(0.5, 1.0, (n, 1, 3))
    out = np.empty((n, p, 3))
    for i in range(n):  # rejection per cloud: the acceptance rate is >= (min axis / max axis)^2 >= 1/4
        got = []
        while sum(len(g) for g in got) < p:
            u = rng.standard_normal((4 * p, 3))
            u /= np.linalg.norm(u, axis=1, keepdims=True)
            a, b, c = abc[i, 0]
            w = np.sqrt((b * c * u[:, 0]) ** 2 + (a * c * u[:, 1]) ** 2 + (a * b * u[:, 2]) ** 2)
            got.append(u[rng.uniform(size=len(u)) < w / (a * b + b * c + a * c)] * abc[i])
        out[i] = np.concatenate(got)[:p]
    return out


def _torus(n: int, p: int, rng) -> np.ndarray:
    r = rng.uniform(0.2, 0.5, (n, 1))
    theta = rng.uniform(0, 2 * np.pi, (n, p))
    # the tube angle phi has density proportional to the area element (1 + r cos phi): rejection from uniform
    phi = np.empty((n, p))
    for i in range(n):
        cand = rng.uniform(0, 2 * np.pi, 4 * p)
        keep = cand[rng.uniform(size=4 * p) < (1 + r[i] * np.cos(cand)) / (1 + r[i])]
        phi[i] = keep[:p]  # acceptance >= 1/3, so 4p candidates leave > p with overwhelming probability
    ring = 1 + r * np.cos(phi)
    return np.stack([ring * np.cos(theta), ring * np.sin(theta), r * np.sin(phi)], -1)


def _box(n: int, p: int, rng) -> np.ndarray:
    s = rng.uniform(0.4, 1.0, (n, 3))
    pts = rng.uniform(-0.5, 0.5, (n, p, 3)) * s[:, None]
    areas = np.stack([s[:, 1] * s[:, 2], s[:, 0] * s[:, 2], s[:, 0] * s[:, 1]], 1)  # faces normal to x, y, z
    axis = np.array([rng.choice(3, p, p=a / a.sum()) for a in areas])  # (n, p): which pair of faces
    side = rng.choice([-0.5, 0.5], (n, p))
    rows = np.arange(n)[:, None]
    pts[rows, np.arange(p)[None], axis] = side * s[rows, axis]
    return pts


def _cylinder(n: int, p: int, rng) -> np.ndarray:
    r, h = rng.uniform(0.25, 0.6, (n, 1)), rng.uniform(0.5, 1.6, (n, 1))
    side = rng.uniform(size=(n, p)) < (2 * np.pi * r * h) / (2 * np.pi * r * h + 2 * np.pi * r ** 2)
    theta = rng.uniform(0, 2 * np.pi, (n, p))
    rad = np.where(side, r, r * np.sqrt(rng.uniform(size=(n, p))))  # a disc is uniform for rho ~ r sqrt(u)
    z = np.where(side, rng.uniform(-0.5, 0.5, (n, p)) * h, rng.choice([-0.5, 0.5], (n, p)) * h)
    return np.stack([rad * np.cos(theta), rad * np.sin(theta), z], -1)


def _cone(n: int, p: int, rng) -> np.ndarray:
    r, h = rng.uniform(0.3, 0.8, (n, 1)), rng.uniform(0.5, 1.6, (n, 1))
    lateral, base = np.pi * r * np.sqrt(r ** 2 + h ** 2), np.pi * r ** 2
    side = rng.uniform(size=(n, p)) < lateral / (lateral + base)
    theta = rng.uniform(0, 2 * np.pi, (n, p))
    s = np.sqrt(rng.uniform(size=(n, p)))  # fraction of the way from the apex; also the disc's r sqrt(u)
    rad = r * s
    z = np.where(side, h * (1 - s), 0.0) - h / 4  # apex at 3h/4, base at -h/4: the solid's centroid at 0
    return np.stack([rad * np.cos(theta), rad * np.sin(theta), z], -1)


SOLIDS = {"ellipsoid": _ellipsoid, "torus": _torus, "box": _box, "cylinder": _cylinder, "cone": _cone}


def normalise(clouds: np.ndarray) -> np.ndarray:
    """(n, P, 3) -> centroid at the origin, farthest point at distance 1."""
    clouds = clouds - clouds.mean(1, keepdims=True)
    return clouds / np.linalg.norm(clouds, axis=2).max(1)[:, None, None]


def make_shapes3d(per_class: int = 1000, points: int = DEFAULT_POINTS, seed: int = 0) -> PointCloudDataset:
    """`per_class` clouds of each solid (see the module docstring), classes in turn: labels 0, 1, .., 4, 0, ..."""
    if per_class < 1 or points < 3:
        raise DataError(f"shapes3d: need per_class >= 1 and points >= 3, got {per_class}, {points}")
    rng = np.random.default_rng(seed)
    parts = [SOLIDS[name](per_class, points, rng) for name in SHAPES3D_CLASSES]  # (per_class, P, 3) each
    clouds = np.stack(parts, 1).reshape(-1, points, 3)  # interleaved: cloud i has class i % 5
    clouds = np.einsum("nij,npj->npi", random_rotations(len(clouds), rng), clouds)
    x = torch.from_numpy(normalise(clouds).astype(np.float32)).transpose(1, 2).contiguous()  # (N, 3, P)
    labels = torch.arange(len(x)) % len(SHAPES3D_CLASSES)
    return PointCloudDataset(x, labels, list(SHAPES3D_CLASSES), name="shapes3d",
                             source=f"diffusekit.data.points.make_shapes3d(per_class={per_class}, points={points}, "
                                    f"seed={seed})")


def load_shapes3d(split: str = "train") -> PointCloudDataset:
    """The built-in `shapes3d`: split "train" (5,000 clouds, seed 0) or "test" (1,000, seed 1)."""
    if split not in SPLITS:
        raise DataError(f"shapes3d has splits {', '.join(SPLITS)}; got {split!r}")
    seed, per_class = SPLITS[split]
    return make_shapes3d(per_class, DEFAULT_POINTS, seed)


def is_cloud_folder(folder: str | os.PathLike) -> bool:
    """True when `folder` holds .ply / .npy / .xyz files and nothing load_data reads as images, audio or clips."""
    files = list_files(Path(folder))
    exts = {p.suffix.lower() for p in files}
    return bool(exts & set(CLOUD_EXTENSIONS)) and not exts & {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif",
                                                              ".wav"}


def load_cloud_folder(folder: str | os.PathLike, points: int | None = None, seed: int = 0) -> PointCloudDataset:
    """Every cloud file under `folder` (rules in the module docstring) -> (N, 3, points)."""
    folder = Path(folder)
    files = [p for p in list_files(folder) if p.suffix.lower() in CLOUD_EXTENSIONS]
    if not files:
        raise DataError(f"folder {folder} has no point-cloud files ({', '.join(CLOUD_EXTENSIONS)})")
    rng = np.random.default_rng(seed)
    read = [read_cloud(path) for path in files]
    points = points or min(median_int([len(c) for c in read]), MAX_POINTS)
    clouds, notes = [], []
    for path, cloud in zip(files, read):
        if len(cloud) != points:
            notes.append(f"{path.name}: {len(cloud)} points resampled to {points}")
        cloud = cloud / np.abs(cloud).max()  # scale-free, and normalise's mean and norms stay clear of overflow
        clouds.append(cloud[rng.choice(len(cloud), points, replace=len(cloud) < points)])
    labels, class_names = folder_labels(folder, files, files)
    x = torch.from_numpy(normalise(np.stack(clouds)).astype(np.float32)).transpose(1, 2).contiguous()
    ds = PointCloudDataset(x, labels, class_names, name=folder.name, source=str(folder))
    ds.notes += ["each cloud centred and scaled to the unit ball"] + notes[:5] + (
        [f"... and {len(notes) - 5} more resampled"] if len(notes) > 5 else [])
    return ds


def read_cloud(path: str | os.PathLike) -> np.ndarray:
    """One cloud file -> float64 (P, 3), checked: finite, at least 3 points."""
    path = Path(path)
    suffix = path.suffix.lower()
    size = check_file(path)
    try:
        if suffix == ".npy":
            check_array_file(path)  # a header that declares terabytes, a zip in disguise
            pts = np.load(path, allow_pickle=False)
        elif suffix == ".xyz":
            check_fits(path, 16 * size, "reading this text cloud")  # loadtxt holds ~8 bytes a character at worst
            pts = np.loadtxt(path, ndmin=2)[:, :3] if size else np.zeros((0, 3))
        elif suffix == ".ply":
            pts = read_ply(path)
        else:
            raise DataError(f"{path}: not a point-cloud file ({', '.join(CLOUD_EXTENSIONS)})")
    except (OSError, ValueError, EOFError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: could not read a point cloud ({e})") from e
    pts = np.asarray(pts)
    if pts.ndim != 2 or pts.shape[1] != 3 or not np.issubdtype(pts.dtype, np.number):
        raise DataError(f"{path}: a cloud is (P, 3) numbers; got {pts.dtype} {pts.shape}")
    if len(pts) < 3:
        raise DataError(f"{path}: {len(pts)} points; a cloud needs at least 3")
    bad = ~np.isfinite(pts).all(1)
    if bad.any():
        raise DataError(f"{path}: {int(bad.sum())} of {len(pts)} points are NaN or inf; fix or drop them")
    pts = pts.astype(np.float64)
    peak = np.abs(pts).max()
    if peak == 0 or np.ptp(pts / peak, axis=0).max() == 0:  # scaled first: ptp of +-1e308 overflows
        raise DataError(f"{path}: all {len(pts)} points coincide; a cloud needs a shape to centre and scale")
    return pts


PLY_TYPES = {"char": "i1", "uchar": "u1", "short": "i2", "ushort": "u2", "int": "i4", "uint": "u4", "float": "f4",
             "double": "f8", "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2", "int32": "i4",
             "uint32": "u4", "float32": "f4", "float64": "f8"}
PLY_LINE = 1 << 16  # bytes: the longest header or ascii vertex line read


def _ply_header(f, path: Path) -> tuple[str | None, list]:
    """(format, elements [name, count, [(property name, type or 'list')]]) of a PLY header, read line by line."""
    fmt, elements = None, []
    for _ in range(10_000):
        line = f.readline(PLY_LINE)  # bounded: a header line of megabytes is no header
        if not line:
            raise DataError(f"{path}: the PLY header never ends (no end_header)")
        words = line.decode("ascii", "replace").split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        try:
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                elements.append([words[1], int(words[2]), []])
                if elements[-1][1] < 0:
                    raise ValueError(f"negative count {words[2]}")
            elif words[0] == "property" and elements:
                elements[-1][2].append((words[-1], "list" if words[1] == "list" else words[1]))
            elif words[0] == "end_header":
                return fmt, elements
        except (IndexError, ValueError) as e:
            raise DataError(f"{path}: a malformed PLY header line {line[:80]!r} ({e})") from e
    raise DataError(f"{path}: the PLY header is over 10,000 lines")


def read_ply(path: str | os.PathLike) -> np.ndarray:
    """The vertex positions (P, 3) of a PLY file (Turk 1994's format; header rules in the module docstring)."""
    path = Path(path)
    size = check_file(path)
    with open(path, "rb") as f:
        if f.readline(PLY_LINE).strip() != b"ply":
            raise DataError(f"{path}: not a PLY file (no 'ply' magic line)")
        fmt, elements = _ply_header(f, path)
        if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
            raise DataError(f"{path}: unknown PLY format {fmt!r}")
        names = [e[0] for e in elements]
        if "vertex" not in names:
            raise DataError(f"{path}: the PLY file has no vertex element")
        before = elements[:names.index("vertex")]
        if before and any(e[1] for e in before):
            raise DataError(f"{path}: elements before 'vertex' ({', '.join(e[0] for e in before)}) are not supported")
        _, count, props = elements[names.index("vertex")]
        if any(t == "list" for _, t in props) or any(t not in PLY_TYPES for _, t in props):
            raise DataError(f"{path}: the vertex element has list or unknown property types")
        if not {"x", "y", "z"} <= {n for n, _ in props}:
            raise DataError(f"{path}: the vertex element has no x, y, z properties")
        # the count against the bytes left (>= 2 a value in ascii: a digit and a space), before reading any
        need = count * (2 * len(props) if fmt == "ascii" else np.dtype([(n, PLY_TYPES[t]) for n, t in props]).itemsize)
        if need > size - f.tell():
            raise DataError(f"{path}: the PLY header declares {count:,} vertices, more than the file's "
                            f"{size - f.tell():,} bytes after it can hold (truncated or corrupt)")
        if fmt == "ascii":
            check_fits(path, count * len(props) * 64, "parsing this ascii PLY")  # Python lists: ~64 bytes a value
            rows = [f.readline(PLY_LINE).split() for _ in range(count)]
            if any(len(r) < len(props) for r in rows):
                raise DataError(f"{path}: the PLY file ends before its {count} vertices")
            table = {n: np.array([float(r[i]) for r in rows]) for i, (n, _) in enumerate(props)}
        else:
            end = "<" if fmt == "binary_little_endian" else ">"
            dtype = np.dtype([(n, end + PLY_TYPES[t]) for n, t in props])
            check_fits(path, 3 * dtype.itemsize * count, "reading this PLY")
            raw = f.read(dtype.itemsize * count)
            if len(raw) < dtype.itemsize * count:
                raise DataError(f"{path}: the PLY file ends before its {count} vertices (truncated?)")
            table = np.frombuffer(raw, dtype=dtype, count=count)
    return np.stack([np.asarray(table[k], dtype=np.float64) for k in "xyz"], 1)


def write_ply(path: str | os.PathLike, points) -> Path:
    """One cloud (3, P) or (P, 3) as a binary little-endian PLY of float32 x, y, z, which any 3-D tool opens."""
    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim == 2 and pts.shape[0] == 3 and pts.shape[1] != 3:
        pts = pts.T
    path = Path(path)
    header = (f"ply\nformat binary_little_endian 1.0\ncomment made by diffusekit\nelement vertex {len(pts)}\n"
              "property float x\nproperty float y\nproperty float z\nend_header\n")
    path.write_bytes(header.encode("ascii") + np.ascontiguousarray(pts, dtype="<f4").tobytes())
    return path
