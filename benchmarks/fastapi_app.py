"""Benchmark only, not shipped: a minimal FastAPI app doing exactly what ``POST /predict`` of the
BentoML service does (the same request schema, :func:`bentos.service.score_rows`, the same model
loaded by the same :class:`tasks.io.model_source.ModelSource`, the same collector settings), so
``bench_serve.py`` measures the cost of the BentoML layer as a ratio. No registry polling, no
other routes, no request-counting middleware.

    uvicorn benchmarks.fastapi_app:app --port 8000 --no-access-log
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from bentos.schema import PredictRequest, PredictResponse
from bentos.service import ServiceMetrics, score_rows
from tasks.core.gc_tuning import tune_gc_for_a_long_running_process
from tasks.io.model_source import ModelSource
from tasks.settings import get_settings

state: dict = {}


@asynccontextmanager
async def lifespan(_app: FastAPI):
    source = ModelSource(get_settings())
    source.load()
    state["source"], state["metrics"] = source, ServiceMetrics()
    tune_gc_for_a_long_running_process()  # as the bento does
    yield


app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)


@app.post("/predict")
async def predict(request: PredictRequest) -> PredictResponse:
    return score_rows(state["source"].current, request.rows, state["metrics"])
