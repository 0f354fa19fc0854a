"""Signed, versioned releases: minisign signatures, a static index and an OCI registry store, and ``pull``."""
