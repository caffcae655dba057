"""One benchmark figure: its series, the ratios between them, and the target it is judged against."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

from bench.stats import Series

_OPS = {"<": operator.lt, "<=": operator.le, ">=": operator.ge}


@dataclass(frozen=True)
class Target:
    key: str  # name of the series or ratio the target applies to (its median is judged)
    op: str  # "<", "<=" or ">="
    value: float
    text: str  # for humans, e.g. "≤ 120 s"


@dataclass
class Figure:
    name: str
    title: str
    unit: str  # unit of the series ("s", "MB"); ratios are dimensionless
    series: dict[str, Series]
    ratios: dict[str, Series] = field(default_factory=dict)
    target: Target | None = None
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # breakdowns, sizes, settings

    def judged(self) -> Series | None:
        if self.target is None:
            return None
        return self.ratios.get(self.target.key) or self.series.get(self.target.key)

    def met(self) -> bool | None:
        judged = self.judged()
        if judged is None or self.target is None:
            return None
        return bool(_OPS[self.target.op](judged.median, self.target.value))

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "unit": self.unit,
            "series": {k: v.to_json() for k, v in self.series.items()},
            "ratios": {k: v.to_json() for k, v in self.ratios.items()},
            "target": None if self.target is None else vars(self.target),
            "met": self.met(),
            "notes": self.notes,
            "details": self.details,
        }
