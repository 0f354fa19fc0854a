#!/usr/bin/env python3
"""Regenerate bench/paper_table3.json from the model registry (the single source of the paper's numbers)."""
import json
from pathlib import Path

from c3ae_edge.bench.paper import document

out = Path(__file__).with_name("paper_table3.json")
out.write_text(json.dumps(document(), indent=1) + "\n")
print(f"wrote {out}")
