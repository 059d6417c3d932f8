"""The HTTP contract of ``POST /predict``: request rows, the response, and their validation.

A row maps feature names to numbers; names it leaves out, or gives as null, are missing values
for the model (never zeros) and are listed in the response. ``product_id`` and ``ts`` may ride
along as row metadata. Anything else is refused with a 400 whose ``error`` names the row and
the field (``"rows[3].ret_std: not a finite number"``; the list is in ``errors``): an unknown
name, a value that is not a JSON number (strings, booleans), a number that is not finite
(``Infinity``, ``NaN``, ``1e999``), an empty batch or one of more than :data:`MAX_ROWS` rows.
Validation happens in pydantic-core before the model is touched, so bad input never reaches it
(and never gets a 5xx).

Shared by the BentoML service and the benchmark's FastAPI twin, so both parse the same way.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from tasks.core.feature_catalog import catalog
from tasks.core.features import FEATURE_NAMES

MAX_ROWS = 10_000
METADATA_FIELDS = ("product_id", "ts")


def _feature(meaning: str, unit: str):
    return Annotated[
        float | None, Field(strict=True, allow_inf_nan=False, description=f"{meaning} [{unit}]")
    ]


_ROW_FIELDS = {
    **{f["name"]: _feature(f["meaning"], f["unit"]) for f in catalog(FEATURE_NAMES)},
    **{
        m: Annotated[str | None, Field(description="row metadata, not a feature")]
        for m in METADATA_FIELDS
    },
}
FeatureRow = TypedDict("FeatureRow", _ROW_FIELDS, total=False)  # names from the feature set
FeatureRow.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]

Rows = Annotated[
    list[FeatureRow],
    Field(
        min_length=1,
        max_length=MAX_ROWS,
        description=f"1 to {MAX_ROWS} rows of feature values by name",
        examples=[[{"ret_mean": 0.05, "ret_std": 0.01, "n": 50}]],
    ),
]


class PredictResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    scores: list[float] = Field(description="spike probability per row")
    spikes: list[bool] = Field(description="score >= threshold, per row")
    threshold: float = Field(description="the model's operating threshold")
    model_variant: str = Field(description="ml or baseline")
    version: str = Field(description="registered model version that scored the rows")
    ts: str = Field(description="when the rows were scored (ISO 8601 UTC)")
    missing: list[list[str]] = Field(description="per row, the features it left out")


class PredictRequest(BaseModel):
    """The request body as one model (the BentoML API takes ``rows`` as its parameter)."""

    rows: Rows
