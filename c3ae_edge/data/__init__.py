"""Face-age datasets read in place, and seeded, age-stratified, recorded splits."""

from c3ae_edge.data.datasets import (
    Sample,
    face_box_for,
    load_dataset,
    read_csv,
    read_fgnet,
    read_imdb_wiki,
    read_utkface,
)
from c3ae_edge.data.splits import load_split, save_split, stratified_split

__all__ = [
    "Sample",
    "face_box_for",
    "load_dataset",
    "read_csv",
    "read_fgnet",
    "read_imdb_wiki",
    "read_utkface",
    "load_split",
    "save_split",
    "stratified_split",
]
