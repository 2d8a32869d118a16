"""Sluice shim: ``AMLResponse`` without Flask (see sluice_worker/_aml.py).

Importable only when the real package is not installed (the shim folder sits at the end of
sys.path)."""

from sluice_worker._aml import AMLResponse  # noqa: F401

__all__ = ["AMLResponse"]
