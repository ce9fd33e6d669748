"""`diffusekit serve`: the web page and HTTP API (`diffusekit.web`)."""

from __future__ import annotations

from pathlib import Path


def add_serve(sub):
    p = sub.add_parser(
        "serve", help="a local web page and HTTP API: generate, reconstruct, watch the reverse process live",
        description="Serve the given run directories on a local web page (and the HTTP API it uses; see the README "
                    "for curl examples): generate with any sampler and its options, reconstruct (inpaint with a "
                    "mask you draw, super-resolution, MRI), watch x_t and the denoiser's x0 estimate at every step, "
                    "cancel, keep a gallery whose PNGs carry their settings (drop one back on the page to restore "
                    "them), and slide t through the forward process of your own image. One job runs at a time per "
                    "model; others wait in a bounded queue.")
    p.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run directories, packed models or zoo model names (`diffusekit models`) to serve")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1, this machine only; any other needs --token)")
    p.add_argument("--port", type=int, default=7860, help="(default: 7860)")
    p.add_argument("--token", help="a secret every API call must carry (Authorization: Bearer TOKEN or ?token=); "
                                   "required to bind another address than loopback")
    p.add_argument("--outputs", type=Path, default=Path("serve-outputs"),
                   help="folder for the jobs' result files, one sub-folder per job (default: serve-outputs)")
    p.add_argument("--queue", type=int, default=8, help="jobs that may wait per model before new ones get HTTP 429 "
                                                        "(default: 8)")


def cmd_serve(a) -> int:
    from ..web import serve

    if a.queue < 1:
        raise ValueError(f"--queue must be >= 1, got {a.queue}")
    serve(a.run_dirs, host=a.host, port=a.port, token=a.token, outputs=a.outputs, max_waiting=a.queue)
    return 0
