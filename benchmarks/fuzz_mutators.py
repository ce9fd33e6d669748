"""The mutators of `fuzz_readers.py`, written by hand and driven by one `random.Random` per case (so a case is the
same file on every run): byte-level ones for every format, lying header fields per format (with checksums fixed so
the lie gets past the first check), structure-aware ones for JSON, .npy/.npz, safetensors and PLY, and the file
kinds (empty, symlinks out of the folder, to /dev/zero, to nothing, to itself, a folder or a FIFO in place of the
file, a sparse file of gigabytes)."""

from __future__ import annotations

import io
import json
import os
import random
import re
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

INTERESTING = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
               0xFFFFFFFFFFFF, 2**63 - 1, 2**64 - 1]
SPARSE = 8 << 30  # bytes a sparse file claims on disk (it holds none)


def interesting(rng: random.Random, width: int) -> int:
    return rng.choice(INTERESTING + [rng.getrandbits(8 * width)]) & ((1 << 8 * width) - 1)


def put(data: bytes, offset: int, width: int, value: int, big: bool = False) -> bytes:
    if offset + width > len(data):
        return data
    return data[:offset] + value.to_bytes(width, "big" if big else "little") + data[offset + width:]


# ---- generic byte mutators -----------------------------------------------------------------------------------------

def truncate(rng, data, fmt):
    return data[: rng.randrange(max(len(data), 1))]


def bitflip(rng, data, fmt):
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if b:  # half the flips in the first 64 bytes, where the headers are
            i = rng.randrange(min(len(b), 64)) if rng.random() < 0.5 else rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def overwrite(rng, data, fmt):
    b = bytearray(data)
    if b:
        i = rng.randrange(len(b))
        fill = rng.choice([b"\0", b"\xff", None])
        n = rng.randint(1, 16)
        b[i: i + n] = fill * n if fill else bytes(rng.getrandbits(8) for _ in range(n))
    return bytes(b)


def int_smash(rng, data, fmt):
    width = rng.choice([1, 2, 4, 8])
    return put(data, rng.randrange(max(min(len(data), 256) - width, 1)), width, interesting(rng, width),
               rng.random() < 0.3)


def chunk(rng, data, fmt):
    if len(data) < 2:
        return data + data
    i, j = sorted(rng.sample(range(len(data)), 2))
    return data[:i] + data[j:] if rng.random() < 0.5 else data[:j] + data[i:j] * rng.randint(1, 50) + data[j:]


def append(rng, data, fmt):
    return data + rng.choice([b"\0" * 4096, bytes(rng.getrandbits(8) for _ in range(512)), data])


# ---- lying headers -------------------------------------------------------------------------------------------------

def png_lie(rng, data, fmt):
    """A field of IHDR (width, height, depth, colour type, interlace) set to a lie, with the CRC recomputed."""
    offset, width = rng.choice([(16, 4), (20, 4), (24, 1), (25, 1), (26, 1), (27, 1), (28, 1)])
    data = put(data, offset, width, interesting(rng, width), big=True)
    return data[:29] + struct.pack(">I", zlib.crc32(data[12:29])) + data[33:]


def jpeg_lie(rng, data, fmt):
    i = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2"))
    offset, width = rng.choice([(5, 2), (7, 2), (9, 1), (4, 1), (2, 2)])
    return put(data, i + offset, width, interesting(rng, width), big=True) if i >= 0 else int_smash(rng, data, fmt)


def gif_lie(rng, data, fmt):
    i = data.find(b",", 13)
    offset = rng.choice([6, 8, 10] + ([i + 1, i + 3, i + 5, i + 7, i + 9, i + 10] if i > 0 else []))
    width = 1 if offset in (10, i + 9, i + 10) else 2
    return put(data, offset, width, interesting(rng, width))


def bmp_lie(rng, data, fmt):
    offset, width = rng.choice([(2, 4), (10, 4), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2), (30, 4), (34, 4),
                                (46, 4)])
    return put(data, offset, width, interesting(rng, width))


def wav_lie(rng, data, fmt):
    offset, width = rng.choice([(4, 4), (16, 4), (20, 2), (22, 2), (24, 4), (28, 4), (32, 2), (34, 2), (40, 4)])
    return put(data, offset, width, interesting(rng, width))


def riff_lie(rng, data, fmt):
    return put(data, rng.choice([4, 16, 20, 24, 26, 28]), 4 if rng.random() < 0.5 else 2, interesting(rng, 4) & 0xFFFF)


# ---- structure-aware -----------------------------------------------------------------------------------------------

VALUES = [None, True, 0, -1, 2**63, 10**30, 1e308, -1e308, float("nan"), float("inf"), "", "x" * 10_000, [], {},
          [1, 2, 3], {"a": 1}, "../../../etc/passwd", 1.5, -0.0, "digits", 3]


def _nodes(value, path=()):
    yield path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        yield from _nodes(v, path + (k,))


def json_struct(rng, data, fmt):
    """One node of the JSON replaced, deleted, renamed or wrapped (the file stays valid JSON)."""
    lines = data.decode("utf-8", "replace").splitlines() if fmt == "jsonl" else [data.decode("utf-8", "replace")]
    k = rng.randrange(len(lines)) if lines else 0
    try:
        doc = json.loads(lines[k])
    except (ValueError, IndexError):
        return bitflip(rng, data, fmt)
    paths = list(_nodes(doc))
    path = rng.choice(paths)
    op = rng.choice(["replace", "replace", "replace", "delete", "rename", "wrap", "add"])
    if not path:
        doc = rng.choice(VALUES) if op == "replace" else [doc]
    else:
        parent = doc
        for p in path[:-1]:
            parent = parent[p]
        key = path[-1]
        if op == "delete":
            del parent[key]
        elif op == "rename" and isinstance(parent, dict):
            parent["zz_" + str(key)] = parent.pop(key)
        elif op == "wrap":
            parent[key] = [parent[key]]
        elif op == "add" and isinstance(parent, dict):
            parent["unknown_field"] = rng.choice(VALUES)
        else:
            parent[key] = rng.choice(VALUES)
    lines[k] = json.dumps(doc)
    return ("\n".join(lines) + "\n").encode()


def json_text(rng, data, fmt):
    """Text-level lies JSON parsers meet: deep nesting, a 5,000-digit integer, NaN, bad UTF-8, a BOM, a duplicate."""
    text = data.decode("utf-8", "replace")
    numbers = [m.span() for m in re.finditer(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", text)]
    kind = rng.choice(["deep", "bigint", "nan", "utf8", "bom", "dup"])
    if kind == "deep":
        return ("[" * 100_000 + "]" * 100_000).encode() if rng.random() < 0.3 else (
            text.replace("{", '{"deep": ' + "[" * 50_000 + "]" * 50_000 + ", ", 1).encode())
    if kind in ("bigint", "nan") and numbers:
        i, j = rng.choice(numbers)
        return (text[:i] + ("1" * 5000 if kind == "bigint" else rng.choice(["NaN", "Infinity", "-Infinity", "1e999"]))
                + text[j:]).encode()
    if kind == "utf8":
        i = rng.randrange(max(len(data), 1))
        return data[:i] + b"\xff\xfe\xc3" + data[i:]
    if kind == "bom":
        return b"\xef\xbb\xbf" + data
    return text.replace("{", '{"a": 1, "a": 2, ', 1).encode()


def _npy(a, fortran=False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asfortranarray(a) if fortran else a, allow_pickle=True)
    return buf.getvalue()


def weird_array(rng: random.Random, like: tuple) -> np.ndarray:
    """Wrong ranks, dtypes and values for an array reader that expects shape `like`."""
    g = np.random.default_rng(rng.getrandbits(32))
    x = g.uniform(-1, 1, like).astype(np.float32)
    kind = rng.randrange(20)
    if kind < 5:
        return [np.zeros(()), np.zeros(5), np.zeros((4, 8)), np.zeros((2, 1, 2, 2, 2, 2)), np.zeros((2, 3, 1))][kind]
    if kind < 8:
        return [np.zeros((0, *like[1:])), np.zeros((like[0], 0, *like[2:])), np.zeros(like[:-1] + (0,))][kind - 5]
    if kind == 8:
        x.flat[g.integers(x.size)] = rng.choice([np.nan, np.inf, -np.inf])
        return x
    return [lambda: x.astype(np.complex64), lambda: x.astype(np.float16), lambda: np.full(like, 1e308) * g.choice(
        [-1, 1], like), lambda: np.full(like, np.iinfo(np.int64).min), lambda: x > 0, lambda: x.astype("<U3"),
        lambda: np.zeros(like, [("a", "<f4"), ("b", "<i2")]), lambda: np.zeros(like, "datetime64[s]"),
        lambda: np.array([object()] * 3 + [None], dtype=object), lambda: x.astype(">f4"),
        lambda: np.full(like, 2**64 - 1, np.uint64)][kind - 9]()


def npy_array(rng, data, fmt):
    like = tuple(np.load(io.BytesIO(data)).shape)
    return _npy(weird_array(rng, like), fortran=rng.random() < 0.2)


def npy_header(rng, data, fmt):
    """The header dict's shape, dtype or length field rewritten (the data left as it was)."""
    n = 10 + struct.unpack_from("<H", data, 8)[0]
    head = data[10:n].decode("latin-1")
    kind = rng.choice(["shape", "descr", "order", "len"])
    if kind == "len":
        return put(data, 8, 2, interesting(rng, 2))
    if kind == "shape":
        dims = rng.choice(["()", "(0,)", "(-1, 1, 8, 8)", "(2**40, 1, 8, 8)", "(4000000000, 1, 1000, 1000)",
                           "(1, 1, 1, 1, 1, 1, 1, 1)", "(8,)", "('a', 1)", "(1.5, 2)", "(6, 1, 8, 8, 99999999)"])
        new = re.sub(r"'shape': \([^)]*\)", f"'shape': {dims}", head)
    elif kind == "descr":
        new = re.sub(r"'descr': '[^']*'", f"'descr': {rng.choice(DESCRS)}", head)
    else:
        new = head.replace("False", "True")
    new = new.rstrip(" \n").ljust(len(head) - 1) + "\n"
    return data[:8] + struct.pack("<H", len(new)) + new.encode("latin-1") + data[n:]


DESCRS = ["'<c16'", "'|O'", "'<U8'", "'|V4'", "'>f8'", "'<m8[s]'", "'|b1'", "'<f2'", "'<i8'", "'|S3'", "'<f16'",
          "'zz'", "[('a', '<f4')]", "5", "'<f4'"]


def npz_member(rng, data, fmt):
    """An .npz rebuilt with odd members: labels of the wrong shape or dtype, no obvious data key, text, a pickle."""
    z = np.load(io.BytesIO(data))
    arrays = {k: z[k] for k in z.files}
    key = next(iter(arrays))
    n = len(arrays[key])
    kind = rng.randrange(8)
    if kind == 0:
        arrays["labels"] = np.arange(n + 1)
    elif kind == 1:
        arrays["labels"] = np.full(n, rng.choice([-5.0, np.nan, 1.5, 1e300]))
    elif kind == 2:
        arrays = {"a": arrays[key], "b": arrays[key]}
    elif kind == 3:
        arrays = {"labels": np.arange(n)}
    elif kind == 4:
        arrays[key] = weird_array(rng, arrays[key].shape)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        for k, v in arrays.items():
            out.writestr(k + ".npy", _npy(v))
        if kind == 5:
            out.writestr("notes.txt", b"not an array")
        if kind == 6:
            out.writestr("x.npy", b"\x93NUMPY garbage")
        if kind == 7:
            out.writestr("labels.npy", _npy(np.array([object()], dtype=object)))
    return buf.getvalue()


def st_header(rng, data, fmt):
    """A safetensors header entry rewritten: dtype, shape or data offsets (the length prefix kept right)."""
    n = struct.unpack_from("<Q", data)[0]
    head = json.loads(data[8:8 + n])
    names = [k for k in head if k != "__metadata__"]
    name = rng.choice(names)
    entry = head[name]
    kind = rng.choice(["dtype", "shape", "offsets", "delete", "add", "len"])
    if kind == "len":
        return put(data, 0, 8, interesting(rng, 8))
    if kind == "dtype":
        entry["dtype"] = rng.choice(["F64", "I8", "BOOL", "F8_E4M3", "XX", "U64", 7])
    elif kind == "shape":
        entry["shape"] = rng.choice([[], [-1], [2**40, 2**40], entry["shape"] + [1], [0], entry["shape"][:-1]])
    elif kind == "offsets":
        a, b = entry["data_offsets"]
        entry["data_offsets"] = rng.choice([[b, a], [a, 2**62], [-1, b], [a, a], [0, b], [a, b + 4]])
    elif kind == "delete":
        del head[name]
    else:
        head["extra.weight"] = {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}
    text = json.dumps(head).encode()
    return struct.pack("<Q", len(text)) + text + data[8 + n:]


def st_nan(rng, data, fmt):
    n = 8 + struct.unpack_from("<Q", data)[0]
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        i = n + 4 * rng.randrange((len(b) - n) // 4)
        b[i: i + 4] = struct.pack("<f", rng.choice([float("nan"), float("inf"), -float("inf"), 1e38]))
    return bytes(b)


def ply_header(rng, data, fmt):
    """One line of a PLY header replaced by a lie (a count, a type, a format), or end_header dropped."""
    end = data.find(b"end_header\n")
    lines = data[:end].decode("ascii").splitlines() + ["end_header"]
    i = rng.randrange(len(lines))
    lines[i] = rng.choice([
        f"element vertex {rng.choice(['-1', '0', '2', str(2**40), '10' * 20, 'abc', ''])}", "format",
        "format binary_big_endian 1.0", "format ascii 1.0", "format binary_little_endian 1.0", "property quux x",
        "property float", "property list uchar int x", "element", "element face 3", "ply", "", "comment " + "x" * 999,
        "property double x"])
    if rng.random() < 0.1:
        lines = lines[:-1]
    return ("\n".join(lines) + "\n").encode("ascii") + data[end + len(b"end_header\n"):]


def text_tokens(rng, data, fmt):
    """Numbers and words of a text file replaced by NaN, inf, overflow, garbage; or a line dropped or bloated."""
    text = data.decode("utf-8", "replace")
    tokens = [m.span() for m in re.finditer(r"\S+", text)]
    if not tokens:
        return b"nan nan nan\n"
    i, j = rng.choice(tokens)
    new = rng.choice(["nan", "inf", "-inf", "1e999", "-", "0x10", "", "1 2 3 4 5 6", "\0", "x" * 100_000, "\n\n",
                      "\udcff"])
    return (text[:i] + new + text[j:]).encode("utf-8", "surrogateescape")


# ---- whole files ---------------------------------------------------------------------------------------------------

def bomb(name):
    def put_bomb(rng, data, fmt, seeds: Path):
        return (seeds / name).read_bytes()
    put_bomb.__name__ = "bomb_" + name
    put_bomb.needs_seeds = True
    return put_bomb


def sparse(rng, data, fmt):
    """Gigabytes on paper (a sparse file): an honest npy header or WAV size for them, or just a hole after the
    file; a reader that reads it all holds gigabytes of zeros."""
    if fmt == "npy":
        head = io.BytesIO()
        np.lib.format.write_array_header_1_0(head, {"descr": "<f4", "fortran_order": False,
                                                    "shape": (SPARSE // 256 - 1, 1, 8, 8)})
        return head.getvalue()
    if fmt == "wav":
        return put(data, 40, 4, 0xFFFFFFF0)[:44]
    if fmt == "ply":
        return data.replace(b"element vertex 64", b"element vertex %d" % (SPARSE // 12))
    return data


PATH_KINDS = ("empty", "link-outside", "link-devzero", "link-missing", "link-loop", "directory", "fifo", "sparse")


def place(kind: str, rng, victim: Path, data: bytes, outside: Path) -> None:
    """Put a file of `kind` at victim (data: the seed's bytes, for the kinds that keep them)."""
    if kind == "empty":
        victim.write_bytes(b"")
    elif kind == "link-outside":  # a valid file elsewhere: following it is fine, reading it must be too
        target = outside / f"{rng.getrandbits(32):08x}{victim.suffix}"
        target.write_bytes(data)
        victim.symlink_to(target)
    elif kind == "link-devzero":
        victim.symlink_to("/dev/zero")
    elif kind == "link-missing":
        victim.symlink_to(outside / "no-such-file")
    elif kind == "link-loop":
        victim.symlink_to(victim.name)
    elif kind == "directory":
        victim.mkdir()
    elif kind == "fifo":  # nobody writes to it: open() for reading blocks forever
        os.mkfifo(victim)
    elif kind == "sparse":
        victim.write_bytes(sparse(rng, data, victim.suffix.lstrip(".").lower()))
        os.truncate(victim, SPARSE)
