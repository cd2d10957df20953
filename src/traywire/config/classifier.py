"""The trained `auto` classifier's weights, read from the package once.

The routing core reads no file: the weights come to it inside the config
(``cfg.auto.classifier``), from here. ``scripts/train-classifier.py`` writes
``classifier.bin`` (the weights, and the summed weights of a vocabulary of
common tokens, so that a request made of them sums nothing);
`traywire.core.classify` defines the model, its file format and its use.
"""

from __future__ import annotations

import functools
import gzip
from importlib import resources

from ..core.classify import Model

MODEL_FILE = "classifier.bin"


def decode(blob: bytes) -> Model:
    """A model from its file's bytes (gzip of `Model.to_raw`)."""
    return Model.from_raw(gzip.decompress(blob))


def encode(model: Model) -> bytes:
    """A model's file bytes: the same for the same model, byte for byte."""
    return gzip.compress(model.to_raw(), compresslevel=9, mtime=0)


@functools.cache
def classifier() -> Model:
    """The shipped model (read and decoded on first use, then shared)."""
    return decode(resources.files("traywire.config").joinpath(MODEL_FILE).read_bytes())
