"""Which store a ``--to`` / ``--from`` names: above ``store`` (the common types) and the two kinds of store, so that
none of them imports another's way back."""

from __future__ import annotations

from c3ae_edge.release.index import StaticStore
from c3ae_edge.release.oci import OciStore
from c3ae_edge.release.store import Store


def open_store(spec: str) -> Store:
    """``oci://HOST[:PORT]/REPO[:TAG]`` -> an OCI registry; a folder or an http(s) URL -> a static index."""
    if spec.startswith("oci://"):
        return OciStore.parse(spec)
    return StaticStore(spec)
