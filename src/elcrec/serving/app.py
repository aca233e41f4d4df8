"""The HTTP API (FastAPI): its OpenAPI schema, served at /openapi.json and /docs, is the contract.

    POST /recommend        {"history": [...], "k": 10, "exclude_seen": true} -> {"items", "scores", "unknown"}
    POST /recommend/batch  {"histories": [[...], ...], "k": 10, "exclude_seen": true} -> {"results": [...]}
    POST /intents          {"histories": [[...], ...]} -> {"results": [{"intent", "distance", "unknown"}, ...]}
    GET  /health           {"status": "ok"}
    GET  /metadata         model, dataset, n_items, max_len, has_intents, index, config

Item ids are the original ids (numbers or strings). Every error is JSON {"detail": ...} with a 4xx
status: 413 for a body over `max_body_bytes`, 422 for a malformed request, an empty history, too many
items or histories, k out of range, or unknown items under unknown="reject"; 400 for /intents on a
model without intents. Nothing else escapes: an unexpected failure is a 500 without a traceback.
"""

import logging  # no `from __future__ import annotations`: FastAPI reads the request models defined in create_app
from typing import Annotated, Literal, Union

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from .recommender import HistoryError, Recommender

log = logging.getLogger("elcrec.serve")
ItemId = Union[int, str]


class Limits(BaseModel):
    max_history: int = Field(1000, ge=1, description="items per history (only the last max_len are read)")
    max_batch: int = Field(256, ge=1, description="histories per batch request")
    max_k: int = Field(1000, ge=1)
    max_body_bytes: int = Field(1 << 20, ge=1)
    unknown: Literal["ignore", "reject"] = Field("ignore", description="unknown items: drop and report, or 422")


class BodyLimit:
    """ASGI middleware: 413 once a request body (declared or streamed) exceeds max_bytes."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = f"request body over {self.max_bytes} bytes"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await JSONResponse({"detail": too_large}, status_code=413)(scope, receive, send)
        received = 0

        async def bounded_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:  # FastAPI turns this into the 413 response while reading the body
                raise HTTPException(status_code=413, detail=too_large)
            return message

        await self.app(scope, bounded_receive, send)


def create_app(recommender: Recommender, limits: Limits | None = None) -> FastAPI:
    limits = limits or Limits()
    max_k = min(limits.max_k, recommender.n_items)
    History = Annotated[list[ItemId], Field(min_length=1, max_length=limits.max_history,
                                            description="a user's items, oldest first (original ids)")]

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid")

    class RecommendRequest(Strict):
        history: History
        k: int = Field(10, ge=1, le=max_k, description="how many items to return")
        exclude_seen: bool = Field(True, description="never return items of the history")

    class BatchRequest(Strict):
        histories: list[History] = Field(min_length=1, max_length=limits.max_batch)
        k: int = Field(10, ge=1, le=max_k)
        exclude_seen: bool = True

    class IntentsRequest(Strict):
        histories: list[History] = Field(min_length=1, max_length=limits.max_batch)

    class Recommendation(BaseModel):
        items: list[ItemId] = Field(description="recommended items, best first")
        scores: list[float]
        unknown: list[ItemId] = Field(description="items of the history the model does not know (ignored)")

    class BatchResponse(BaseModel):
        results: list[Recommendation]

    class Intent(BaseModel):
        intent: int = Field(description="index of the nearest intent centre")
        distance: float
        unknown: list[ItemId]

    class IntentsResponse(BaseModel):
        results: list[Intent]

    app = FastAPI(title="elcrec", summary=f"{recommender.config.model} recommendations and intents",
                  version="1")
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)

    @app.exception_handler(HistoryError)
    async def history_error(request: Request, error: HistoryError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("request failed")
        return JSONResponse({"detail": "internal error"}, status_code=500)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metadata")
    def metadata() -> dict:
        return {**recommender.metadata(), "limits": limits.model_dump()}

    @app.post("/recommend", response_model=Recommendation)
    def recommend(request: RecommendRequest) -> dict:
        return recommender.recommend([request.history], request.k, request.exclude_seen, limits.unknown)[0]

    @app.post("/recommend/batch", response_model=BatchResponse)
    def recommend_batch(request: BatchRequest) -> dict:
        return {"results": recommender.recommend(request.histories, request.k, request.exclude_seen, limits.unknown)}

    @app.post("/intents", response_model=IntentsResponse,
              responses={400: {"description": "the model has no intents"}})
    def intents(request: IntentsRequest) -> JSONResponse | dict:
        if not recommender.has_intents:
            return JSONResponse({"detail": f"model {recommender.config.model!r} has no intents"}, status_code=400)
        return {"results": recommender.intents(request.histories, limits.unknown)}

    return app
