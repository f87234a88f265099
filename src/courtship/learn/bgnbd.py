"""Who is still a customer: the BG/NBD model of Fader, Hardie & Lee (2005), "Counting Your
Customers the Easy Way: An Alternative to the Pareto/NBD Model", *Marketing Science* 24(2).

While alive, a customer buys at their own steady rate λ (Poisson); rates differ between
customers as a gamma distribution (shape ``r``, scale ``alpha``). After each purchase a customer
may leave for good with their own probability p; those probabilities differ as a beta
distribution (``a``, ``b``). What a customer's history says is three numbers: ``x`` repeat
purchases (purchase days after the first), ``t_x`` the time from the first purchase to the
last, ``T`` the time from the first purchase to now, in one time unit (the engine uses days).

The four parameters are fitted by maximum likelihood on the base's own histories (equation 6
of the paper), in log space with L-BFGS-B and the exact gradient, on one BLAS thread (the sums
are memory-bound: threads only contend, and one thread gives the same fit at every run).
Customers with the same ``(x, t_x, T)`` share a likelihood term, so the fit works on the
distinct triples, weighted by how many customers have each: a million customers with
day-resolution histories are a few hundred thousand terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import betaln, expit, gammaln, hyp2f1, psi

Array = NDArray[np.float64]


class FitError(ValueError):
    """The histories cannot be fitted (none, or the optimiser did not converge)."""


@dataclass(frozen=True)
class BGNBD:
    """A fitted BG/NBD model: its four parameters and the log-likelihood it reached."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    customers: int

    def p_alive(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> Array:
        """P(alive | x, t_x, T): the probability that each customer has not left (equation
        in section 5 of Fader, Hardie & Lee 2005's technical note); 1 with no repeat purchase,
        since the model lets a customer leave only just after a purchase."""
        x, t_x, T = _arrays(x, t_x, T)
        repeat = x > 0
        odds = np.zeros_like(x)
        odds[repeat] = (self.r + x[repeat]) * np.log(
            (self.alpha + T[repeat]) / (self.alpha + t_x[repeat])
        ) + np.log(self.a / (self.b + x[repeat] - 1))
        return np.where(repeat, expit(-odds), 1.0)

    def expected_purchases(self, t: float, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> Array:
        """E[Y(t) | x, t_x, T]: the expected number of purchases in the next ``t`` (equation 10
        of the paper), one value per customer."""
        x, t_x, T = _arrays(x, t_x, T)
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        big_a, big_b, big_c = r + x, b + x, a + b + x - 1
        z = t / (alpha + T + t)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            log_hyp = np.log(hyp2f1(big_a, big_b, big_c, z))
            # Euler's transformation where the series overflows: the same value.
            alternative = np.log(hyp2f1(big_c - big_a, big_c - big_b, big_c, z)) + (
                big_c - big_a - big_b
            ) * np.log1p(-z)
        log_hyp = np.where(np.isfinite(log_hyp), log_hyp, alternative)
        first = (a + b + x - 1) / (a - 1)
        second = 1 - np.exp(log_hyp + (r + x) * np.log((alpha + T) / (alpha + t + T)))
        repeat = x > 0
        late = np.zeros_like(x)
        late[repeat] = (a / (b + x[repeat] - 1)) * (
            (alpha + T[repeat]) / (alpha + t_x[repeat])
        ) ** (r + x[repeat])
        return first * second / (1 + late)


def log_likelihood(
    params: ArrayLike,
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    weights: ArrayLike | None = None,
) -> float:
    """The BG/NBD log-likelihood of ``params`` = (r, alpha, a, b) for the histories given
    (equation 6 of the paper), each history counted ``weights`` times (once by default)."""
    x, t_x, T = _arrays(x, t_x, T)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    log_params = np.log(np.asarray(params, dtype=np.float64))
    value, _ = _value_and_gradient(log_params, _Histories(x, t_x, T, w))
    return -value


def fit(
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    start: BGNBD | None = None,
) -> BGNBD:
    """The maximum-likelihood BG/NBD model of these histories (``x`` repeat purchases, ``t_x``
    and ``T`` in one time unit), each counted ``weights`` times (default: customers with the
    same history are grouped here). ``start``: a model of similar customers to start from (the
    whole base's, for a persona). Raises :class:`FitError` without any history, for a history
    that cannot be, or when the optimiser fails."""
    x, t_x, T = _arrays(x, t_x, T)
    if weights is None and x.size:
        (x, t_x, T), counts = np.unique(np.stack([x, t_x, T]), axis=1, return_counts=True)
    else:
        counts = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    counts = counts.astype(np.float64)
    total = float(counts.sum())
    if not x.size or total <= 0:
        raise FitError("no customer has an order to learn from")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(t_x)) and np.all(np.isfinite(T))):
        raise FitError("histories need finite x, t_x and T")
    if np.any(x < 0) or np.any(t_x < 0) or np.any(t_x > T) or np.any((x == 0) & (t_x != 0)):
        raise FitError("histories need 0 <= t_x <= T, and t_x = 0 without a repeat purchase")
    scale = max(float(np.average(T, weights=counts)), 1e-6)
    begin = np.log([1.0, scale, 1.0, 1.0])
    if start is not None:
        begin = np.clip(np.log([start.r, start.alpha, start.a, start.b]), *BOUNDS)
    if x.size > SAMPLE:
        # Most of the way on a sample of the histories, the rest on all of them: the same
        # optimum (the full likelihood decides), in a few evaluations of it instead of dozens.
        begin = _rough(x, t_x, T, counts, begin)
    result = _minimise(_Histories(x, t_x, T, counts / total), begin)
    if not np.all(np.isfinite(result.x)) or not np.isfinite(result.fun):
        raise FitError(f"the BG/NBD fit did not converge: {result.message}")
    r, alpha, a, b = np.exp(result.x)
    return BGNBD(
        r=float(r),
        alpha=float(alpha),
        a=float(a),
        b=float(b),
        log_likelihood=float(-result.fun * total),
        customers=round(total),
    )


#: Bounds of the log parameters: e^-12 to e^12 covers every base of people (days or weeks).
BOUNDS = (-12.0, 12.0)
#: Distinct histories beyond which the fit starts from a fit on this many of them.
SAMPLE = 20_000


def _rough(x: Array, t_x: Array, T: Array, counts: Array, begin: Array) -> Array:
    """The log parameters fitted on ``SAMPLE`` of the histories (drawn with a fixed seed),
    from ``begin``: where the fit on all of them starts."""
    sample = np.random.default_rng(SAMPLE).choice(x.size, SAMPLE, replace=False)
    part = counts[sample]
    rough = _minimise(_Histories(x[sample], t_x[sample], T[sample], part / part.sum()), begin)
    return rough.x if np.all(np.isfinite(rough.x)) else begin


def rough_fit(x: ArrayLike, t_x: ArrayLike, T: ArrayLike, weights: ArrayLike) -> BGNBD | None:
    """A model fitted on a sample of these grouped histories only (all of them when they are
    few): a start for the fits of parts of them (personas), not a model to predict with."""
    x, t_x, T = _arrays(x, t_x, T)
    counts = np.asarray(weights, dtype=np.float64)
    if not x.size or counts.sum() <= 0:
        return None
    scale = max(float(np.average(T, weights=counts)), 1e-6)
    begin = np.log([1.0, scale, 1.0, 1.0])
    if x.size > SAMPLE:
        found = _rough(x, t_x, T, counts, begin)
    else:
        found = _minimise(_Histories(x, t_x, T, counts / counts.sum()), begin).x
    if not np.all(np.isfinite(found)):
        return None
    r, alpha, a, b = np.exp(found)
    return BGNBD(float(r), float(alpha), float(a), float(b), float("nan"), round(counts.sum()))


def _minimise(histories: _Histories, start: Array) -> Any:
    # The likelihood's sums are dot products of a few hundred thousand numbers: memory-bound,
    # so BLAS threads only contend (on a busy machine, several times slower). One thread.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        return minimize(
            _value_and_gradient,
            start,
            args=(histories,),
            jac=True,
            method="L-BFGS-B",
            bounds=[BOUNDS] * 4,
            options={"maxiter": 1000, "ftol": 1e-11, "gtol": 1e-8},
        )


class _Histories:
    """Histories as the likelihood reads them. Every term but one depends on ``x`` alone or on
    ``T`` alone, so it is summed over their distinct values (a few hundred or thousand) with
    the weights of each; only the second term of the likelihood, for histories with a repeat
    purchase, is computed history by history."""

    def __init__(self, x: Array, t_x: Array, T: Array, w: Array) -> None:
        self.total = float(w.sum())
        self.x, x_at = np.unique(x, return_inverse=True)
        self.T, T_at = np.unique(T, return_inverse=True)
        self.w_x = np.bincount(x_at, w, self.x.size)
        self.w_T = np.bincount(T_at, w, self.T.size)
        self.wx_T = np.bincount(T_at, w * x, self.T.size)
        repeat = x > 0
        self.t_x, self.t_at = np.unique(t_x[repeat], return_inverse=True)
        self.rx_at, self.rT_at = x_at[repeat], T_at[repeat]
        self.r_x, self.r_w = x[repeat], w[repeat]


def _value_and_gradient(log_params: Array, h: _Histories) -> tuple[float, Array]:
    """Minus the weighted log-likelihood at ``log_params`` and its gradient in log space.

    ln L = A1 + A2 + A3 + [x > 0] ln(1 + exp(D)), with
    A1 = lngamma(r+x) - lngamma(r) + r ln(alpha), A2 = ln B(a, b+x) - ln B(a, b),
    A3 = -(r+x) ln(alpha+T), D = A4 - A3 = ln a - ln(b+x-1) - (r+x) ln((alpha+t_x)/(alpha+T)).
    """
    r, alpha, a, b = np.exp(log_params)
    ux, uT = h.x, h.T
    log_t, inv_t = np.log(alpha + uT), 1 / (alpha + uT)
    b_x = np.where(ux > 0, b + ux - 1, 1.0)  # only read where x > 0
    # The terms of x alone and of T alone, over their distinct values.
    weight_t = r * h.w_T + h.wx_T
    value = (
        h.w_x
        @ (gammaln(r + ux) - gammaln(r) + r * np.log(alpha) + betaln(a, b + ux) - betaln(a, b))
        - weight_t @ log_t
    )
    d_r = h.w_x @ (psi(r + ux) - psi(r) + np.log(alpha)) - h.w_T @ log_t
    d_alpha = r / alpha * h.total - weight_t @ inv_t
    d_a = h.w_x @ (psi(a + b) - psi(a + b + ux))
    d_b = h.w_x @ (psi(a + b) + psi(b + ux) - psi(b) - psi(a + b + ux))
    if h.r_x.size:  # the second term, history by history
        later = np.log(alpha + h.t_x)[h.t_at]
        later -= log_t[h.rT_at]
        rx = h.r_x + r
        d = (np.log(a) - np.log(b_x))[h.rx_at]
        d -= rx * later
        # ln(1 + e^d) and its derivative e^d / (1 + e^d) from one exponential, e^-|d|.
        small = np.exp(-np.abs(d))
        value += h.r_w @ (np.maximum(d, 0.0) + np.log1p(small))
        w4 = np.where(d >= 0.0, 1.0, small)
        w4 /= 1.0 + small
        w4 *= h.r_w
        d_r -= w4 @ later
        spread = (1 / (alpha + h.t_x))[h.t_at]
        spread -= inv_t[h.rT_at]
        spread *= rx
        d_alpha -= w4 @ spread
        d_a += w4.sum() / a
        d_b -= w4 @ (1 / b_x)[h.rx_at]
    gradient = np.array([d_r * r, d_alpha * alpha, d_a * a, d_b * b])
    return float(-value), -gradient


def _arrays(x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> tuple[Array, Array, Array]:
    return (
        np.asarray(x, dtype=np.float64),
        np.asarray(t_x, dtype=np.float64),
        np.asarray(T, dtype=np.float64),
    )
