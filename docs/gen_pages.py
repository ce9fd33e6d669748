"""Write the generated pages of the docs from the code itself, so they cannot drift from it: cli.md (every command's
--help), samplers.md (every sampler: its paper, options and defaults, docstring), data.md (the built-in data sets and
the file formats), run-directory.md (what a run writes), zoo.md (the shipped models and their cards). `tests/test_docs.py` fails when a committed page differs
from what this writes; run `python docs/gen_pages.py` after changing a command, a sampler or a data set."""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

DOCS = Path(__file__).parent


def cli_page() -> str:
    from diffusekit.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parts = ["# Command line\n", "Every command of `diffusekit`, as its `--help` prints it.\n",
             "```text\n" + parser.format_help().rstrip() + "\n```\n"]
    for name, p in sub.choices.items():
        parts.append(f"## diffusekit {name}\n\n```text\n{p.format_help().rstrip()}\n```\n")
    return "\n".join(parts)


def samplers_page() -> str:
    import diffusekit.samplers as samplers
    from diffusekit.samplers import SAMPLERS, sampler_options

    table = samplers.__doc__.split("\n\n")[1]
    parts = ["# Samplers\n", "Every sampler takes `sample_<name>(denoiser, x, sigmas, *, cond, generator, callback, "
             "**options)` and is reached by name: `diffusekit.sample(denoiser, shape, sampler=NAME, steps=N, "
             "**options)`, `TrainedModel.sample(..., sampler=NAME, **options)`, or "
             "`diffusekit sample RUN --sampler NAME --option KEY=VALUE`.\n",
             "```text\n" + table.rstrip() + "\n```\n"]
    for name, fn in SAMPLERS.items():
        options = sampler_options(name)
        rows = "\n".join(f"| `{k}` | `{v!r}` |" for k, v in options.items()) or "| (none) | |"
        doc = inspect.cleandoc(fn.__doc__ or "")
        parts.append(f"## {name}\n\n```text\n{doc}\n```\n\n| option | default |\n| --- | --- |\n{rows}\n")
    return "\n".join(parts)


def data_page() -> str:
    import diffusekit.data as data
    import diffusekit.data.arrays as arrays
    import diffusekit.data.folder as folder
    from diffusekit.data import BUILTINS

    rows = "\n".join(f"| `{name}` | {desc} |" for name, desc in BUILTINS.items())
    return "\n".join([
        "# Data\n", "```text\n" + inspect.cleandoc(data.__doc__) + "\n```\n",
        "## Built-in data sets (all made or read offline)\n", "| name | what |\n| --- | --- |\n" + rows + "\n",
        "## Image folders\n", "```text\n" + inspect.cleandoc(folder.__doc__) + "\n```\n",
        "## Arrays (.npy / .npz)\n", "```text\n" + inspect.cleandoc(arrays.__doc__) + "\n```\n",
    ])


def run_directory_page() -> str:
    import diffusekit.rundir as rundir
    import diffusekit.train.checkpoint as checkpoint

    return "\n".join(["# The run directory\n", "```text\n" + inspect.cleandoc(rundir.__doc__) + "\n```\n",
                      "## Checkpoints\n", "```text\n" + inspect.cleandoc(checkpoint.__doc__) + "\n```\n"])


def zoo_page() -> str:
    import diffusekit.zoo as zoo

    rows = "\n".join(f"| `{r['name']}` | {r['task']} | {r['bytes'] / 1e6:.1f} MB | {r['steps']} | {r['quality']} |"
                     for r in zoo.catalogue())
    cards = [(zoo.ZOO_DIR / n / "MODEL.md").read_text().replace("\n# ", "\n## ", 1).replace("# ", "## ", 1)
             for n in zoo.names()]
    return "\n".join(["# The model zoo\n", inspect.cleandoc(zoo.__doc__) + "\n",
                      "| name | task | size | steps | quality |", "|---|---|---|---|---|", rows + "\n", *cards])


PAGES = {"cli.md": cli_page, "samplers.md": samplers_page, "data.md": data_page,
         "run-directory.md": run_directory_page, "zoo.md": zoo_page}


def main() -> int:
    for name, make in PAGES.items():
        (DOCS / name).write_text(make())
        print(DOCS / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
