"""Embedded default faces (package data): see c3ae_edge.export.default_faces and README.md here."""
