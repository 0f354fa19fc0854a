"""The C99 int8 engine: plain C generated from the verified int8 trunk graph, no runtime library.

``graph`` reads the .tflite, ``walk``/``network`` turn it into a chain of layers with every integer constant derived
as TFLite Micro derives it (``fixedpoint``), ``plan`` lays out one caller-provided work buffer with the early layers
streamed in row bands, ``emit`` writes the C sources, and the bundle step builds, verifies and measures them.
"""
