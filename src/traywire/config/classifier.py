"""The trained `auto` classifier's weights, read from the package once.

The routing core reads no file: the weights come to it inside the config
(``cfg.auto.classifier``), from here. ``scripts/train-classifier.py`` writes
``classifier.bin`` (the weights, and the summed weights of a vocabulary of
common tokens, so that a request made of them sums nothing);
`traywire.core.classify` defines the model, its file format and its use.

A config carries `SHIPPED`, a stand-in that reads the weights at the first
`auto` request rather than at start (a few MiB a proxy that never sees
`auto` does not hold).
"""

from __future__ import annotations

import functools

from ..core.classify import DEFAULT_MIN_MARGIN, Classification, Model
from ..types import Capability

MODEL_FILE = "classifier.bin"


def decode(blob: bytes) -> Model:
    """A model from its file's bytes (gzip of `Model.to_raw`)."""
    import gzip

    return Model.from_raw(gzip.decompress(blob))


def encode(model: Model) -> bytes:
    """A model's file bytes: the same for the same model, byte for byte."""
    import gzip

    return gzip.compress(model.to_raw(), compresslevel=9, mtime=0)


@functools.cache
def classifier() -> Model:
    """The shipped model (read and decoded on first use, then shared)."""
    from importlib import resources

    return decode(resources.files("traywire.config").joinpath(MODEL_FILE).read_bytes())


class _Shipped:
    """The shipped model, read at its first use (then shared, `classifier`)."""

    __slots__ = ()

    def classify(
        self, text: str, default: Capability = "chat", min_margin: float = DEFAULT_MIN_MARGIN
    ) -> Classification:
        return classifier().classify(text, default, min_margin)

    def __repr__(self) -> str:
        return "<the shipped classifier>"


SHIPPED = _Shipped()
