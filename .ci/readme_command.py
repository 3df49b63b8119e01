"""Print the command the README marks with ``<!-- ci:NAME -->`` (the first line of the next code
block), so CI runs exactly what the README tells a newcomer to run."""

import sys
from pathlib import Path

name = sys.argv[1]
lines = Path(__file__).resolve().parents[1].joinpath("README.md").read_text().splitlines()
marker = lines.index(f"<!-- ci:{name} -->")
fence = next(i for i in range(marker + 1, len(lines)) if lines[i].startswith("```"))
print(lines[fence + 1].strip())
