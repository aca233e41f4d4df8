"""The HTTP API (FastAPI): its OpenAPI schema, served at /openapi.json and /docs, is the contract.

    POST /recommend        {"history": [...], "k": 10, "exclude_seen": true} -> {"items", "scores", "unknown"}
    POST /recommend/batch  {"histories": [[...], ...], "k": 10, "exclude_seen": true} -> {"results": [...]}
    POST /intents          {"histories": [[...], ...]} -> {"results": [{"intent", "distance", "unknown"}, ...]}
    GET  /health           {"status": "ok"}
    GET  /metadata         model, data, n_items, max_len, has_intents, index, config, limits

Item ids are the original ids (numbers or strings). Every error is JSON {"detail": ...} with a 4xx
status, declared in the schema (`Error`: a message, or FastAPI's list of field errors): 413 for a body
over `max_body_bytes`; 422 for a malformed request (not JSON, NaN, Infinity or a number beyond float range,
a wrong type, "5" for a number or 1 for a boolean), an empty history, too many items or histories, k out of
range, a history without a known item, or unknown items under unknown="reject"; 400 for /intents on a model
without intents. Nothing else escapes: an unexpected failure is a 500 without a traceback.
"""

import json
import logging  # no `from __future__ import annotations`: FastAPI reads the request models defined in create_app
import math
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from .recommender import INDEXES, UNKNOWN_POLICIES, HistoryError, Recommender

log = logging.getLogger("elcrec.serve")
ItemId = int | str


class Limits(BaseModel):
    max_history: int = Field(1000, ge=1, description="items per history (only the last max_len are read)")
    max_batch: int = Field(256, ge=1, description="histories per batch request")
    max_k: int = Field(1000, ge=1, description="largest k; capped at the number of items")
    max_body_bytes: int = Field(1 << 20, ge=1)
    unknown: Literal[UNKNOWN_POLICIES] = Field("ignore", description="unknown items: drop and report, or 422")


class Metadata(BaseModel):
    model: str
    data: str = Field(description="the name of the data the model was trained on")
    n_items: int
    max_len: int = Field(description="the most recent items of a history the model reads (bert4rec: one fewer)")
    has_intents: bool = Field(description="whether /intents answers")
    index: Literal[INDEXES]
    config: dict[str, Any] = Field(description="the run's settings, files by name")
    limits: Limits = Field(description="the limits applied (max_k at most n_items)")


class FieldError(BaseModel):
    loc: list[int | str] = Field(description="where: body, then the field names and list positions")
    msg: str
    type: str


class Error(BaseModel):
    detail: str | list[FieldError] = Field(description="a message, or one entry per invalid part of the body")


def strict_json(body: bytes) -> Any:
    """`body` parsed as JSON, refusing what Python's json module reads but JSON (and the response encoder) has
    not: NaN, Infinity, numbers beyond float range, lone surrogate escapes, nesting deeper than the stack. A
    refusal is a JSONDecodeError, which FastAPI answers as 422 like any malformed body."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise json.JSONDecodeError("the body is not UTF-8", "", error.start) from None
    try:
        value = json.loads(text, parse_constant=_non_finite, parse_float=_number)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None
    except ValueError as error:  # a non-finite number, or an integer over Python's 4300-digit conversion limit
        raise json.JSONDecodeError(str(error).split(";")[0], text, 0) from None  # not the advice to the server
    if "\\u" in text:  # only an escape makes a lone surrogate (UTF-8 cannot hold one); responses could not echo it
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise json.JSONDecodeError("a string holds an unpaired surrogate escape", text, 0) from None
    return value


def _non_finite(token: str) -> float:
    raise ValueError(f"{token} is not a finite number")


def _number(token: str) -> float | int:
    number = float(token)
    if not math.isfinite(number):
        raise ValueError(f"{token} is not a finite number")
    # JSON has one number type: 5.0 is the integer 5 (as JSON Schema's "integer"), so strict int fields take it
    return int(number) if number.is_integer() else number


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """A route whose JSON body goes through `strict_json` (Starlette's Request.json takes NaN and Infinity)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler


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
    limits = limits.model_copy(update={"max_k": min(limits.max_k, recommender.n_items)})  # as applied, and reported
    default_k = min(recommender.default_k, limits.max_k)
    History = Annotated[
        list[ItemId],
        Field(min_length=1, max_length=limits.max_history, description="a user's items, oldest first (original ids)"),
    ]

    class Strict(BaseModel):  # what the schema says, no more: no "5" for a number, 1 for a boolean, true for an item
        model_config = ConfigDict(extra="forbid", strict=True)

    class RecommendRequest(Strict):
        history: History
        k: int = Field(default_k, ge=1, le=limits.max_k, description="how many items to return")
        exclude_seen: bool = Field(True, description="never return items of the history")

    class BatchRequest(Strict):
        histories: list[History] = Field(min_length=1, max_length=limits.max_batch)
        k: int = Field(default_k, ge=1, le=limits.max_k)
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

    app = FastAPI(title="elcrec", summary=f"{recommender.config.model} recommendations and intents", version="1")
    app.router.route_class = StrictJSONRoute
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    rejected = {
        413: {"model": Error, "description": f"request body over {limits.max_body_bytes} bytes"},
        422: {"model": Error, "description": "malformed request, or a history that cannot be scored"},
    }

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        # the declared FieldError: where and why, never the input back (a too-long history came back whole)
        fields = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in error.errors()]
        return JSONResponse({"detail": fields}, status_code=422)

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

    @app.get("/metadata", response_model=Metadata)
    def metadata() -> dict:
        return {**recommender.metadata(), "limits": limits.model_dump()}

    @app.post("/recommend", response_model=Recommendation, responses=rejected)
    def recommend(request: RecommendRequest) -> dict:
        return recommender.recommend([request.history], request.k, request.exclude_seen, limits.unknown)[0]

    @app.post("/recommend/batch", response_model=BatchResponse, responses=rejected)
    def recommend_batch(request: BatchRequest) -> dict:
        return {"results": recommender.recommend(request.histories, request.k, request.exclude_seen, limits.unknown)}

    @app.post(
        "/intents",
        response_model=IntentsResponse,
        responses={**rejected, 400: {"model": Error, "description": "the model has no intents"}},
    )
    def intents(request: IntentsRequest) -> JSONResponse | dict:
        if not recommender.has_intents:
            return JSONResponse({"detail": f"model {recommender.config.model!r} has no intents"}, status_code=400)
        return {"results": recommender.intents(request.histories, limits.unknown)}

    return app
