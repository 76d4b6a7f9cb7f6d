"""Datasets of the embedded default model (the bundled digits). A low layer: ``train`` (training) and ``eval``
(the reference statistics) both read it; it imports neither."""

from fpqvar.data.digits import DigitSplit, load_split

__all__ = ["DigitSplit", "load_split"]
