"""Inference: `Recommender` scores any history; `create_app` serves it over HTTP (FastAPI)."""

from .recommender import HistoryError, Recommender

__all__ = ["HistoryError", "Limits", "Recommender", "create_app"]


def __getattr__(name: str):
    if name in ("Limits", "create_app"):  # FastAPI is imported only by whoever serves
        from . import app

        return getattr(app, name)
    raise AttributeError(name)
