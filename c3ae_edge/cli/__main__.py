"""``python -m c3ae_edge.cli``: the same entry point as the ``c3ae-edge`` script."""

from c3ae_edge.cli import main

main()
