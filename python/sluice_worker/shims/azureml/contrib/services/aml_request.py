"""Sluice shim: ``rawhttp`` and ``AMLRequest`` without Flask (see sluice_worker/_aml.py).

Importable only when the real package is not installed (the shim folder sits at the end of
sys.path)."""

from sluice_worker._aml import AMLRequest, rawhttp  # noqa: F401

__all__ = ["AMLRequest", "rawhttp"]


def __getattr__(name):
    # azmlinfsrv keeps the @rawhttp flag in this module's global ``_rawHttpRequested``.
    if name == "_rawHttpRequested":
        from sluice_worker import _aml

        return _aml.raw_http_requested()
    raise AttributeError(name)
