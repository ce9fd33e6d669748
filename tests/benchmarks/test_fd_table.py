"""benchmarks/fd_table.py: the FD table of BENCHMARKS.md section 5, checked on hand-computed figures."""

import importlib.util
import json
from pathlib import Path

SPEC = importlib.util.spec_from_file_location("fd_table", Path(__file__).parents[2] / "benchmarks" / "fd_table.py")
fd_table = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(fd_table)


def test_table_means_ratios_and_pairs(tmp_path):
    rows = [{"sampler": "ddpm", "steps": 1000, "seed": s, "fd": v} for s, v in ((2, 18.0), (3, 22.0))]
    rows += [{"sampler": "heun", "steps": 10, "seed": s, "fd": v} for s, v in ((2, 30.0), (3, 20.0), (4, 25.0))]
    rows += [{"sampler": "a", "steps": 10, "seed": s, "fd": v} for s, v in ((2, 28.0), (3, 21.0), (4, 22.0))]
    for i, part in enumerate((rows[:2], rows[2:])):  # two files, as one process per DDPM seed writes
        (tmp_path / f"{i}.json").write_text(json.dumps({"quality": part}))
    lines = fd_table.table(sorted(tmp_path.glob("*.json")), ("ddpm", 1000), "heun")
    by = {line.split(" | ")[0][2:]: line.split(" | ") for line in lines[2:]}
    assert by["ddpm"][3] == "20.0 +- 2.0" and by["ddpm"][4] == ""
    assert by["heun"][3] == "25.0 +- 2.9" and by["heun"][4] == "+25%"  # 25 / 20; se = 5 / sqrt(3)
    # a: 28, 21, 22 -> mean 23.67, sd 3.79, se 2.19; 23.67 / 20 = +18%
    # a - heun per seed: -2, +1, -3 -> mean -1.33, sd 2.08, se 1.20; lower on 2 of 3
    assert by["a"][3] == "23.7 +- 2.2" and by["a"][4] == "+18%" and by["a"][5] == "-1.33 +- 1.20 (2 of 3) |"
