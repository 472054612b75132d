"""Constrained field types shared by the LangChain classes, so each rule is stated once."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

__all__ = ["NonNegativeInt", "Omega", "PositiveInt", "Seconds", "Temperature", "TopP"]

Omega = Annotated[float, Field(ge=0, allow_inf_nan=False, description="Steering strength; 1 = plain decoding.")]
Temperature = Annotated[float, Field(ge=0, allow_inf_nan=False, description="0 = greedy.")]
TopP = Annotated[float, Field(gt=0, le=1)]
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
