"""`diffusekit serve`: a local web page and HTTP API over trained models. Generate (unconditional, class label, text
prompt with negative prompt), reconstruct (inpaint with a drawn mask, super-resolution, MRI), watch the reverse
process live (x_t and the denoiser's x0 estimate at every step), cancel, keep a gallery of results whose PNGs carry
their settings, and slide t through the forward process of your own image.

    app.py     the HTTP API (Starlette, served by uvicorn) and the page's routes
    jobs.py    the job queue: one worker per model, a bounded queue (429 when full), cancel within one step
    models.py  the models served: loaded once, named, described for the page
    params.py  every request checked (types, ranges, sizes) into a job's complete settings
    work.py    what a job does: the CLI's own library calls, live previews, result files
    static/    the page (HTML, CSS, JavaScript; no CDN, nothing fetched from elsewhere)

    from diffusekit.web import serve
    serve(["runs/digits"], port=7860)
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from pathlib import Path

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str | None) -> None:
    """Another address than loopback exposes the models and the disk they write to: only with a token."""
    if not is_loopback(host) and not token:
        raise ValueError(f"binding {host} would let anyone who reaches this machine run jobs on it; give --token "
                         f"SECRET (every API call then needs it: Authorization: Bearer SECRET) or bind 127.0.0.1")


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def serve(sources: list[str | Path], host: str = "127.0.0.1", port: int = 7860, token: str | None = None,
          outputs: str | Path = "serve-outputs", max_waiting: int = 8, device: str = "cpu") -> None:
    """Load the models and serve the page and API until interrupted (see the package docstring)."""
    import uvicorn

    from .app import Server, create_app
    from .models import load_models

    check_binding(host, token)
    if not port_free(host, port):
        raise ValueError(f"port {port} on {host} is in use; pick another with --port")
    models = load_models(sources, device=device)
    server = Server(models, Path(outputs), token=token, max_waiting=max_waiting)
    address = f"http://{'[' + host + ']' if ':' in host else host}:{port}/" + (f"?token={token}" if token else "")
    print(f"diffusekit serve: {len(models)} model(s) ({', '.join(models)}); results in {outputs}; open {address}",
          file=sys.stderr, flush=True)
    uvicorn.run(create_app(server), host=host, port=port, log_level="warning")


__all__ = ["check_binding", "is_loopback", "serve"]
