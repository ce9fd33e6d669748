"""The hostile requests of `web_faults.py`, each made from one `random.Random` (case i is the same bytes on every
run): random methods and paths with path tricks in model, job and file names; mutated JSON bodies (the structure
mutators of `fuzz_mutators.py`, and values aimed at each field: huge, negative, NaN, wrong types); hostile image
uploads (the byte and header mutators of `fuzz_mutators.py` on small valid images, and decompression bombs);
raw HTTP that breaks the protocol (bad request lines, huge or many headers, lying Content-Length and chunking);
oversized bodies; odd content types.

A case is a dict: {"kind", "raw": the bytes to send, "close_ok": whether the server may close the connection without
an answer (the request never became complete), "half": send only this many bytes of raw, then shut the write side}.
"""

from __future__ import annotations

import base64
import io
import json
import random

from PIL import Image

import fuzz_mutators as M
from fuzz_seeds import gif_bomb, png_bomb

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "G", "get"]
TRICKS = ["../", "..%2F", "%2e%2e%2f", "%2E%2E/", "..\\", "....//", "%252e%252e%252f", "..%c0%af", "..%00/", "%00",
          "/etc/passwd", "%2Fetc%2Fpasswd", "~", ".", "..", "", "%", "%zz", "a%00b", "\u00e9t\u00e9", "%ff%fe",
          "CON", "aux.png", "x" * 300, "y" * 5000, "samples.npz/../../secret.txt", "samples.npz%2F..%2F..%2Fsecret.txt",
          "..;/", "./samples.npz", "SAMPLES.NPZ", " samples.npz", "samples.npz ", "image-000.png?x=1", "#frag"]
HOSTILE = [None, True, False, 0, -1, 2**63, 10**12, 10**30, -10**12, 1e308, -1e308, float("nan"), float("inf"),
           float("-inf"), "", "x" * 10_000, [], {}, [1, 2], {"a": 1}, "../../../etc/passwd", "\x00", 1.5, -0.0, "1",
           "inf", "nan", "digits", 3, 2]
KEYS = ["model", "task", "sampler", "steps", "num", "seed", "guidance", "label", "prompt", "negative_prompt",
        "options", "method", "sigma_y", "scale", "acceleration", "mask_kind", "example", "image", "mask", "t"]
OPTIONS = ["eta", "s_churn", "s_tmin", "s_tmax", "s_noise", "variance", "restart_min", "restart_max", "restarts",
           "restart_steps", "spacing", "sigma_min", "sigma_max", "jump_length", "resample", "zeta", "noisy"]
BYTE_MUTATORS = [M.truncate, M.bitflip, M.overwrite, M.int_smash, M.chunk, M.append]
HEADER_MUTATORS = {"png": M.png_lie, "jpeg": M.jpeg_lie, "gif": M.gif_lie, "bmp": M.bmp_lie, "webp": M.riff_lie}
CONTENT_TYPES = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=zz",
                 "application/json; charset=utf-16", "image/png", "", "application/json" + "x" * 4000]


def request(method: str, path: str, body: bytes = b"", headers: dict | None = None, host: str = "127.0.0.1") -> bytes:
    """An HTTP/1.1 request as bytes (Connection: close, Content-Length unless headers give their own)."""
    h = {"Host": host, "Connection": "close", **({"Content-Length": str(len(body))} if body or method == "POST"
                                                  else {}), **(headers or {})}
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    return head.encode("utf-8", "surrogateescape") + body


def post_json(path: str, body, headers: dict | None = None) -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body, allow_nan=True).encode()
    return request("POST", path, data, {"Content-Type": "application/json", **(headers or {})})


def image_seeds() -> dict[str, tuple[str, bytes]]:
    """Small valid images of every format an upload may be, and bombs: name -> (format, bytes)."""
    seeds = {}
    for name, mode, size, fmt in [("gray.png", "L", (16, 16), "PNG"), ("rgba.png", "RGBA", (20, 30), "PNG"),
                                  ("rgb.jpg", "RGB", (16, 16), "JPEG"), ("gray.bmp", "L", (16, 16), "BMP"),
                                  ("pal.gif", "P", (16, 16), "GIF"), ("rgb.webp", "RGB", (16, 16), "WEBP")]:
        buf = io.BytesIO()
        Image.effect_noise(size, 60).convert(mode).save(buf, format=fmt)
        seeds[name] = (fmt.lower(), buf.getvalue())
    seeds["bomb-100k.png"] = ("png", png_bomb(100_000, 100_000, 4))  # 10^10 pixels declared
    seeds["bomb-4096.png"] = ("png", png_bomb(4096, 4096, 64))  # at the limit, most rows missing
    seeds["bomb-4097.png"] = ("png", png_bomb(4097, 16, 16))  # one pixel over the limit
    seeds["bomb-frames.gif"] = ("gif", gif_bomb(4000, 4000, 300))
    return seeds


def hostile_image(rng: random.Random, seeds: dict) -> bytes:
    name = rng.choice(sorted(seeds))
    fmt, data = seeds[name]
    if name.startswith("bomb") or rng.random() < 0.1:
        return data
    for _ in range(rng.randint(1, 3)):
        mutate = HEADER_MUTATORS[fmt] if rng.random() < 0.35 else rng.choice(BYTE_MUTATORS)
        data = mutate(rng, data, fmt)
    return data


def path_case(rng, ctx) -> dict:
    trick = rng.choice(TRICKS + [ctx["secret"], ctx["outputs"] + "/" + ctx["job"] + "/samples.npz"])
    job = rng.choice([ctx["job"], trick, "0123456789abcdef"])
    path = rng.choice([f"/api/models/{trick}/examples/0.png", f"/api/models/{ctx['model']}/examples/{trick}.png",
                       f"/api/jobs/{job}", f"/api/jobs/{job}/events", f"/api/jobs/{job}/cancel",
                       f"/api/jobs/{ctx['job']}/files/{trick}", f"/api/jobs/{job}/files/{trick}", f"/static/{trick}",
                       f"/{trick}", f"/api/{trick}", "/api/models/" + str(rng.choice([10**30, -1, "0x1"])) + "/x",
                       f"/api/models/{ctx['model']}/examples/{10**40}.png", "/api/jobs?token=" + trick])
    if rng.random() < 0.5:  # URL-encode what a client library would have sent raw
        path = path.replace(" ", "%20").replace("#", "%23").replace("\\", "%5C")
    body = json.dumps({"model": trick}).encode() if rng.random() < 0.3 else b""
    return {"kind": "path", "raw": request(rng.choice(METHODS), path, body)}


def valid_bodies(ctx) -> list[tuple[str, dict]]:
    m = ctx["model"]
    return [("/api/jobs", {"model": m, "steps": 2, "num": 1, "seed": 1}),
            ("/api/jobs", {"model": m, "sampler": "restart", "steps": 2, "num": 1, "options": {"restarts": 1}}),
            ("/api/jobs", {"model": m, "sampler": "euler", "steps": 2, "num": 1, "options": {"s_churn": 0.5}}),
            ("/api/jobs", {"model": m, "task": "inpaint", "steps": 2, "example": 1, "mask_kind": "box"}),
            ("/api/jobs", {"model": m, "task": "inpaint", "method": "repaint", "steps": 2, "example": 1,
                           "options": {"resample": 1, "jump_length": 1}}),
            ("/api/jobs", {"model": m, "task": "superres", "steps": 2, "example": 2, "scale": 2}),
            ("/api/jobs", {"model": m, "task": "mri", "steps": 2, "example": 3}),
            ("/api/forward", {"model": m, "t": 10, "example": 0})]


def json_case(rng, ctx) -> dict:
    path, body = rng.choice(valid_bodies(ctx))
    r = rng.random()
    if r < 0.45:  # one field set to a hostile value (or an option of the sampler / solver)
        if rng.random() < 0.35:
            body["options"] = {rng.choice(OPTIONS): rng.choice(HOSTILE + [10**6, 10**9, 1e9, 2**31, 500, 1000])}
        else:
            body[rng.choice(KEYS)] = rng.choice(HOSTILE)
        data = json.dumps(body, allow_nan=True).encode()
    elif r < 0.75:
        data = M.json_struct(rng, json.dumps(body).encode(), "json")
    elif r < 0.95:
        data = M.json_text(rng, json.dumps(body).encode(), "json")
    else:
        data = rng.choice([b"", b"null", b"[]", b"{", b"\x00" * 64, bytes(rng.getrandbits(8) for _ in range(256))])
    return {"kind": "json", "raw": post_json(path, data)}


def upload_case(rng, ctx) -> dict:
    data = hostile_image(rng, ctx["images"])
    url = ("data:image/png;base64," if rng.random() < 0.7 else "") + base64.b64encode(data).decode()
    m = ctx["model"]
    path, body = rng.choice([("/api/jobs", {"model": m, "task": "inpaint", "steps": 2, "image": url}),
                             ("/api/jobs", {"model": m, "task": "inpaint", "steps": 2, "example": 0, "mask": url}),
                             ("/api/jobs", {"model": m, "task": "superres", "steps": 2, "scale": 2, "image": url}),
                             ("/api/forward", {"model": m, "t": 300, "image": url})])
    return {"kind": "upload", "raw": post_json(path, body)}


def http_case(rng, ctx) -> dict:
    """The protocol itself broken. Incomplete requests may be closed without an answer (close_ok)."""
    job = json.dumps({"model": ctx["model"], "steps": 2, "num": 1}).encode()
    kind = rng.randrange(12)
    if kind == 0:
        raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 2000)))  # the server may wait for the head's
        return {"kind": "http", "raw": raw, "half": len(raw), "close_ok": True}  # end: the client hangs up
    if kind == 1:
        line = rng.choice([b"GET / HTTP/9.9", b"GET /\x00 HTTP/1.1", b"GET", b"GET / HTTP/1.1 extra", b" / HTTP/1.1",
                           b"GET " + b"/a" * 20_000 + b" HTTP/1.1", b"\r\n\r\n\r\nGET / HTTP/1.1", b"GET / HTTP/1.0"])
        return {"kind": "http", "raw": line + b"\r\nHost: x\r\nConnection: close\r\n\r\n", "close_ok": True}
    if kind == 2:  # one huge header
        return {"kind": "http", "raw": request("GET", "/api/models", headers={"X-Big": "a" * rng.choice(
            [8_000, 70_000, 1_000_000])}), "close_ok": True}
    if kind == 3:  # many headers
        return {"kind": "http", "raw": request("GET", "/api/jobs", headers={f"X-{i}": "v" for i in range(
            rng.choice([100, 2000, 20_000]))}), "close_ok": True}
    if kind == 4:  # a header line without a colon, or with a NUL, or a bad name
        bad = rng.choice([b"NoColon", b"X-A: a\x00b", b"X A: b", b": empty", b"X-A:\x7f"])
        return {"kind": "http", "raw": b"GET /api/models HTTP/1.1\r\nHost: x\r\n" + bad + b"\r\n\r\n", "close_ok": True}
    if kind == 5:  # Content-Length that lies, or is not a number
        cl = rng.choice(["-1", "abc", "1e3", "99999999999999999999", "0x10", "5, 6", str(len(job) + 50)])
        raw = request("POST", "/api/jobs", job, {"Content-Length": cl})  # all sent, then the client hangs up
        return {"kind": "http", "raw": raw, "half": len(raw), "close_ok": True}
    if kind == 6:  # the body cut short, then the client hangs up
        raw = post_json("/api/jobs", job)
        return {"kind": "http", "raw": raw, "half": len(raw) - rng.randint(1, len(job)), "close_ok": True}
    if kind == 7:  # chunked, with bad chunk sizes
        chunks = rng.choice([b"zz\r\n" + job + b"\r\n0\r\n\r\n", b"-5\r\nab\r\n0\r\n\r\n",
                             b"%x\r\n" % len(job) + job + b"\r\n",  # no last chunk: incomplete
                             b"FFFFFFFFFFFFFFFFFF\r\n" + job, b"%x\r\n" % len(job) + job + b"\r\n0\r\n\r\n"])
        raw = request("POST", "/api/jobs", chunks, {"Transfer-Encoding": "chunked", "Content-Length": None})
        raw = raw.replace(b"Content-Length: None\r\n", b"")
        return {"kind": "http", "raw": raw, "half": len(raw), "close_ok": True}
    if kind == 8:  # both framings at once (request smuggling)
        raw = request("POST", "/api/jobs", b"5\r\nhello\r\n0\r\n\r\n", {"Transfer-Encoding": "chunked"})
        return {"kind": "http", "raw": raw, "close_ok": True}
    if kind == 9:  # pipelined requests, one of them bad
        one = request("GET", "/api/models", headers={"Connection": "keep-alive"})
        return {"kind": "http", "raw": one + b"BAD\r\n\r\n" + one, "close_ok": True}
    if kind == 10:  # odd content types on a valid job
        ctype = rng.choice(CONTENT_TYPES)
        return {"kind": "content-type", "raw": request("POST", "/api/jobs", job, {"Content-Type": ctype})}
    return {"kind": "http", "raw": request("GET", "/api/models", headers={"Expect": "100-continue",
                                                                         "Upgrade": "websocket",
                                                                         "Connection": "upgrade"}), "close_ok": True}


def oversize_case(rng, ctx, limit: int) -> dict:
    """A body over the server's limit. Declared: only the head is sent; the server must answer 413 without reading
    the body (the case is then answered with 0 body bytes sent). Chunked (no length given): limit + 1 MB is sent."""
    if rng.random() < 0.6:
        head = request("POST", rng.choice(["/api/jobs", "/api/forward"]), b"",
                       {"Content-Type": "application/json", "Content-Length": str(limit + rng.choice([1, 2**20, 2**33]))})
        return {"kind": "oversize-declared", "raw": head, "close_ok": False}
    n = limit + 2**20
    body = b'{"model": "' + b"a" * (n - 14) + b'"}'
    chunked = b"".join(b"%x\r\n" % len(body[i:i + 65536]) + body[i:i + 65536] + b"\r\n"
                       for i in range(0, len(body), 65536)) + b"0\r\n\r\n"
    return {"kind": "oversize-chunked", "raw": request("POST", "/api/jobs", chunked, {
        "Transfer-Encoding": "chunked", "Content-Type": "application/json"}), "close_ok": False}


KINDS = [("path", 0.25, path_case), ("json", 0.35, json_case), ("upload", 0.2, upload_case),
         ("http", 0.19, http_case)]


def make_case(seed: int, i: int, ctx: dict, limit: int) -> dict:
    rng = random.Random(f"{seed}-{i}")
    r = rng.random()
    if r < 0.01:
        case = oversize_case(rng, ctx, limit)
    else:
        for _, weight, make in KINDS:
            r -= weight
            if r < 0:
                break
        case = make(rng, ctx)
    case["raw"] = case["raw"].replace(b"Content-Length: None\r\n", b"")
    return case
