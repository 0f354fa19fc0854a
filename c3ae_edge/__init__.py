"""c3ae-edge: the C3AE compact age estimator, trained, exported and benchmarked for embedded boards."""

__version__ = "0.1.0"

from c3ae_edge import interrupt as _interrupt

_interrupt.install_early()  # the c3ae-edge program only: Ctrl-C from its first line on is "interrupted", 130
