"""c3ae-edge: the C3AE compact age estimator, trained, exported and benchmarked for embedded boards."""

__version__ = "0.1.0"
