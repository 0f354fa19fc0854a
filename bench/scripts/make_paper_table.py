#!/usr/bin/env python3
"""Regenerate c3ae_edge/bench/tables/paper_table3.json from the model registry (the single source of the paper's
numbers)."""

import json

from c3ae_edge.bench.paper import document
from c3ae_edge.bench.report import table_file

out = table_file("paper_table3.json")
out.write_text(json.dumps(document(), indent=1) + "\n")
print(f"wrote {out}")
