"""Time distributions: a parametric spec (scenario files, cold-start priors) and a gridded CDF.

Why two shapes: the rehearsal *samples* durations from a spec (numpy generator passed in), while
the pacing policies only ever ask one question, fast and vectorised - "given that this call has
rung for ``a`` seconds / this agent has talked for ``e`` seconds, how likely is it to end within
``h``?". A :class:`GridDist` answers that with ``np.interp`` on a precomputed CDF, whether the
CDF came from a formula (cold start) or from observed samples mixed with a prior (estimators).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

try:  # the C routine behind np.interp, without its Python wrapper (hot path of every decision)
    from numpy._core.multiarray import interp as _interp
except ImportError:  # numpy < 2
    from numpy.core.multiarray import interp as _interp  # type: ignore[no-redef]
from pydantic import BaseModel, ConfigDict, Field, model_validator

FloatArray = NDArray[np.float64]

#: Points in a gridded CDF. Enough for sub-second resolution on ring times and ~2 s on talk times.
GRID_POINTS = 2048
#: Below this survival the conditional formulas switch to a memoryless tail (no 0/0).
TAIL_SURVIVAL = 1e-4


def norm_cdf(x: FloatArray | float) -> FloatArray:
    """Standard normal CDF, vectorised, |error| < 1.5e-7 (Abramowitz-Stegun 7.1.26 on erf)."""
    z = np.asarray(x, dtype=np.float64) * (1.0 / math.sqrt(2.0))
    a = np.abs(z)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    erf_abs = 1.0 - poly * np.exp(-a * a)
    erf = np.where(z >= 0, erf_abs, -erf_abs)
    return np.asarray(0.5 * (1.0 + erf), dtype=np.float64)


class DistKind(enum.StrEnum):
    CONST = "const"
    EXPONENTIAL = "exponential"
    UNIFORM = "uniform"
    GAMMA = "gamma"
    LOGNORMAL = "lognormal"
    EMPIRICAL = "empirical"
    MIXTURE = "mixture"


class DistSpec(BaseModel):
    """A duration distribution as written in a scenario: ``{dist: gamma, shape: 4, scale: 2.5}``.

    ``offset`` is added to every draw; ``min`` / ``max`` clip draws (and the CDF). A lognormal
    takes ``mean`` and ``cv`` or ``sd``. A mixture is ``{dist: mixture, parts: [{weight: 0.2,
    dist: const, value: 1}, ...]}``. A bare number in YAML means a constant
    (see :func:`as_dist_spec`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    dist: DistKind
    value: float | None = Field(None, ge=0)  # const
    mean: float | None = Field(None, gt=0)  # exponential, lognormal
    cv: float | None = Field(None, gt=0)  # lognormal
    sd: float | None = Field(None, gt=0)  # lognormal (instead of cv)
    shape: float | None = Field(None, gt=0)  # gamma
    scale: float | None = Field(None, gt=0)  # gamma
    low: float | None = Field(None, ge=0)  # uniform
    high: float | None = Field(None, gt=0)  # uniform
    samples: tuple[float, ...] | None = None  # empirical
    parts: tuple[MixPart, ...] | None = None  # mixture
    offset: float = Field(0.0, ge=0)
    min: float | None = Field(None, ge=0)
    max: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _needs(self) -> DistSpec:
        need = {
            DistKind.CONST: ("value",),
            DistKind.EXPONENTIAL: ("mean",),
            DistKind.UNIFORM: ("low", "high"),
            DistKind.GAMMA: ("shape", "scale"),
            DistKind.LOGNORMAL: ("mean", "cv" if self.sd is None else "sd"),
            DistKind.EMPIRICAL: ("samples",),
            DistKind.MIXTURE: ("parts",),
        }[self.dist]
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"dist {self.dist.value} needs {', '.join(missing)}")
        if self.dist is DistKind.UNIFORM and self.high <= self.low:  # type: ignore[operator]
            raise ValueError("uniform: high must be above low")
        if self.dist is DistKind.EMPIRICAL and (not self.samples or min(self.samples) < 0):
            raise ValueError("empirical: samples must be a non-empty list of durations >= 0")
        if self.max is not None and self.max <= self.offset:
            raise ValueError("max must be above offset")
        if self.min is not None and self.max is not None and self.max <= self.min:
            raise ValueError("max must be above min")
        if self.dist is DistKind.MIXTURE and not self.parts:
            raise ValueError("mixture: give at least one part")
        return self

    @property
    def _cv(self) -> float:
        if self.sd is not None:
            return float(self.sd) / float(self.mean or 1.0)
        return float(self.cv or 1.0)

    def _weights(self) -> NDArray[np.float64]:
        w = np.array([p.weight for p in self.parts or ()], dtype=np.float64)
        return np.asarray(w / w.sum(), dtype=np.float64)

    # --- sampling (the rehearsal) -------------------------------------------------------

    def sample(self, rng: np.random.Generator, n: int) -> FloatArray:
        k = self.dist
        if k is DistKind.CONST:
            x = np.full(n, float(self.value or 0.0))
        elif k is DistKind.EXPONENTIAL:
            x = rng.exponential(float(self.mean or 1.0), n)
        elif k is DistKind.UNIFORM:
            x = rng.uniform(float(self.low or 0.0), float(self.high or 1.0), n)
        elif k is DistKind.GAMMA:
            x = rng.gamma(float(self.shape or 1.0), float(self.scale or 1.0), n)
        elif k is DistKind.LOGNORMAL:
            mu, sigma = _lognormal_params(float(self.mean or 1.0), self._cv)
            x = rng.lognormal(mu, sigma, n)
        elif k is DistKind.MIXTURE:
            parts = self.parts or ()
            which = rng.choice(len(parts), n, p=self._weights())
            draws = np.stack([p.spec().sample(rng, n) for p in parts])
            x = draws[which, np.arange(n)]
        else:
            x = rng.choice(np.asarray(self.samples, dtype=np.float64), n)
        x = x + self.offset
        if self.min is not None:
            x = np.maximum(x, self.min)
        if self.max is not None:
            x = np.minimum(x, self.max)
        return np.asarray(x, dtype=np.float64)

    def mean_value(self) -> float:
        """The distribution's mean (exact where a formula exists, else from the grid)."""
        if self.max is not None or self.min is not None:
            return self.to_grid().mean
        k = self.dist
        if k is DistKind.MIXTURE:
            parts = self.parts or ()
            m = float(np.dot(self._weights(), [p.spec().mean_value() for p in parts]))
            return m + self.offset
        if k is DistKind.CONST:
            m = float(self.value or 0.0)
        elif k is DistKind.UNIFORM:
            m = (float(self.low or 0.0) + float(self.high or 0.0)) / 2.0
        elif k is DistKind.GAMMA:
            m = float(self.shape or 0.0) * float(self.scale or 0.0)
        elif k is DistKind.EMPIRICAL:
            m = float(np.mean(self.samples or (0.0,)))
        else:
            m = float(self.mean or 0.0)
        return m + self.offset

    # --- the CDF (priors) -----------------------------------------------------------------

    def upper(self) -> float:
        """A point beyond which essentially no mass lies (grid end)."""
        k = self.dist
        if k is DistKind.CONST:
            base = float(self.value or 0.0) * 1.5 + 1.0
        elif k is DistKind.EXPONENTIAL:
            base = float(self.mean or 1.0) * 12.0
        elif k is DistKind.UNIFORM:
            base = float(self.high or 1.0) * 1.2
        elif k is DistKind.GAMMA:
            m = float(self.shape or 1.0) * float(self.scale or 1.0)
            sd = math.sqrt(float(self.shape or 1.0)) * float(self.scale or 1.0)
            base = m + 12.0 * sd
        elif k is DistKind.LOGNORMAL:
            mu, sigma = _lognormal_params(float(self.mean or 1.0), self._cv)
            base = math.exp(mu + 4.5 * sigma)
        elif k is DistKind.MIXTURE:
            base = max(p.spec().upper() for p in self.parts or ())
        else:
            base = max(self.samples or (1.0,)) * 1.2 + 1.0
        top = base + self.offset
        if self.max is not None:
            top = min(top, self.max * 1.05 + 0.5)
        return max(top, self.offset + 1.0)

    def to_grid(self, points: int = GRID_POINTS) -> GridDist:
        x = np.linspace(0.0, self.upper(), points)
        if self.max is not None and self.max < x[-1]:  # the clip point is a grid point
            x = np.unique(np.concatenate((x, [self.max])))
        y = x - self.offset  # the un-shifted variable
        k = self.dist
        if k is DistKind.MIXTURE:
            parts = self.parts or ()
            cdfs = np.stack([p.spec().to_grid().at(y) for p in parts])
            cdf = self._weights() @ cdfs
        elif k is DistKind.CONST:
            cdf = (y >= float(self.value or 0.0)).astype(np.float64)
        elif k is DistKind.EXPONENTIAL:
            cdf = np.where(y > 0, 1.0 - np.exp(-np.maximum(y, 0.0) / float(self.mean or 1.0)), 0.0)
        elif k is DistKind.UNIFORM:
            lo, hi = float(self.low or 0.0), float(self.high or 1.0)
            cdf = np.clip((y - lo) / (hi - lo), 0.0, 1.0)
        elif k is DistKind.LOGNORMAL:
            mu, sigma = _lognormal_params(float(self.mean or 1.0), self._cv)
            with np.errstate(divide="ignore"):
                z = (np.log(np.maximum(y, 1e-300)) - mu) / sigma
            cdf = np.where(y > 0, norm_cdf(z), 0.0)
        elif k is DistKind.GAMMA:
            cdf = _gamma_cdf(y, float(self.shape or 1.0), float(self.scale or 1.0))
        else:
            s = np.sort(np.asarray(self.samples, dtype=np.float64)) + self.offset
            return GridDist.from_samples(s, x)
        if self.min is not None:
            cdf = np.where(x < self.min, 0.0, cdf)
        if self.max is not None:
            cdf = np.where(x >= self.max, 1.0, cdf)
        cdf = np.maximum.accumulate(np.clip(cdf, 0.0, 1.0))
        cdf[-1] = 1.0
        return GridDist(x, cdf)


class MixPart(BaseModel):
    """One weighted part of a mixture: ``{weight: 0.2, dist: const, value: 1}``."""

    model_config = ConfigDict(frozen=True, extra="allow")

    weight: float = Field(gt=0)

    def spec(self) -> DistSpec:
        return DistSpec.model_validate(self.model_extra or {})

    @model_validator(mode="after")
    def _valid_part(self) -> MixPart:
        self.spec()  # raises a ValidationError naming the problem
        return self


def as_dist_spec(value: Any) -> Any:
    """YAML shorthand: a bare number is a constant duration."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return {"dist": "const", "value": value}
    return value


def _lognormal_params(mean: float, cv: float) -> tuple[float, float]:
    sigma2 = math.log1p(cv * cv)
    return math.log(mean) - sigma2 / 2.0, math.sqrt(sigma2)


def _gamma_cdf(y: FloatArray, shape: float, scale: float) -> FloatArray:
    """Numerical CDF of a gamma on a grid (trapezoid on a 16x finer grid)."""
    top = float(y[-1]) if len(y) else 1.0
    fine = np.linspace(0.0, max(top, 1e-9), len(y) * 16)
    with np.errstate(divide="ignore", invalid="ignore"):
        logpdf = (
            (shape - 1.0) * np.log(np.maximum(fine, 1e-300))
            - fine / scale
            - math.lgamma(shape)
            - shape * math.log(scale)
        )
    pdf = np.where(fine > 0, np.exp(logpdf), 0.0 if shape >= 1 else 0.0)
    cum = np.concatenate(([0.0], np.cumsum((pdf[1:] + pdf[:-1]) * 0.5 * np.diff(fine))))
    cum = cum / cum[-1] if cum[-1] > 0 else cum
    return np.asarray(np.interp(y, fine, cum, left=0.0, right=1.0), dtype=np.float64)


@dataclass(frozen=True)
class GridDist:
    """A CDF tabulated on an increasing grid ``x`` (``cdf[-1] == 1``). Immutable."""

    x: FloatArray
    cdf: FloatArray
    mean: float = field(default=float("nan"))

    def __post_init__(self) -> None:
        if not math.isfinite(self.mean):
            # E[X] = integral of the survival function over the grid.
            sf = 1.0 - self.cdf
            m = float(np.sum((sf[1:] + sf[:-1]) * 0.5 * np.diff(self.x)))
            object.__setattr__(self, "mean", m)
        self.x.setflags(write=False)
        self.cdf.setflags(write=False)

    @classmethod
    def from_samples(
        cls, samples: FloatArray, x: FloatArray | None = None, points: int = GRID_POINTS
    ) -> GridDist:
        s = np.sort(np.asarray(samples, dtype=np.float64))
        if x is None:
            top = float(s[-1]) * 1.05 + 1.0 if len(s) else 1.0
            x = np.linspace(0.0, top, points)
        cdf = np.searchsorted(s, x, side="right") / max(len(s), 1)
        cdf = np.asarray(cdf, dtype=np.float64)
        cdf[-1] = 1.0
        return cls(x, cdf)

    @classmethod
    def mix(cls, prior: GridDist, samples: FloatArray, prior_weight: float) -> GridDist:
        """Posterior-like blend: ``prior_weight`` pseudo-observations of ``prior`` plus samples."""
        n = len(samples)
        if n == 0:
            return prior
        top = max(float(prior.x[-1]), float(np.max(samples)) * 1.05 + 1.0)
        x = np.linspace(0.0, top, len(prior.x))
        emp = np.searchsorted(np.sort(samples), x, side="right") / n
        cdf = (prior_weight * prior.at(x) + n * emp) / (prior_weight + n)
        cdf = np.asarray(cdf, dtype=np.float64)
        cdf[-1] = 1.0
        return cls(x, cdf)

    def at(self, t: FloatArray | float) -> FloatArray:
        """CDF at ``t`` (0 below the grid, 1 above)."""
        return np.asarray(_interp(t, self.x, self.cdf, 0.0, 1.0))

    def sf(self, t: FloatArray | float) -> FloatArray:
        return 1.0 - self.at(t)

    def quantiles(self, probs: FloatArray) -> FloatArray:
        """Inverse CDF at ``probs`` (the smallest grid point reaching each probability)."""
        idx = np.searchsorted(self.cdf, probs, side="left")
        return np.asarray(self.x[np.minimum(idx, len(self.x) - 1)], dtype=np.float64)

    def finish_within(
        self, elapsed: FloatArray, horizon: FloatArray | float, extra: float = 0.0
    ) -> FloatArray:
        """P(X + extra <= elapsed + horizon | X > elapsed), vectorised (broadcasts).

        ``extra`` is a known delay after the event (wrap-up after talk). Past the tail of the
        distribution the remaining time is taken as exponential with the distribution's mean,
        so an agent on a record-long call is neither "certain to finish" nor "never finishing".
        """
        e = np.asarray(elapsed, dtype=np.float64)
        reach = np.maximum(np.asarray(horizon, dtype=np.float64) - extra, 0.0)
        f_e = _interp(e, self.x, self.cdf, 0.0, 1.0)
        s_e = 1.0 - f_e
        num = _interp(e + reach, self.x, self.cdf, 0.0, 1.0) - f_e
        ok = s_e > TAIL_SURVIVAL
        if ok.all():
            return np.asarray(num / s_e)  # in [0, 1]: the CDF is monotone
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(ok, num / s_e, 1.0 - np.exp(-reach / max(self.mean, 1.0)))
        return np.asarray(np.minimum(np.maximum(p, 0.0), 1.0), dtype=np.float64)


DistSpec.model_rebuild()
