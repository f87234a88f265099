"""Who is still a customer: the BG/NBD model of Fader, Hardie & Lee (2005), "Counting Your
Customers the Easy Way: An Alternative to the Pareto/NBD Model", *Marketing Science* 24(2).

While alive, a customer buys at their own steady rate λ (Poisson); rates differ between
customers as a gamma distribution (shape ``r``, scale ``alpha``). After each purchase a customer
may leave for good with their own probability p; those probabilities differ as a beta
distribution (``a``, ``b``). What a customer's history says is three numbers: ``x`` repeat
purchases (purchase days after the first), ``t_x`` the time from the first purchase to the
last, ``T`` the time from the first purchase to now, in one time unit (the engine uses days).

The four parameters are fitted by maximum likelihood on the base's own histories (equation 6
of the paper), in log space with L-BFGS-B and the exact gradient. Customers with the same
``(x, t_x, T)`` share a likelihood term, so the fit works on the distinct triples, weighted by
how many customers have each: a million customers with day-resolution histories are a few
hundred thousand terms.
"""

from __future__ import annotations

from dataclasses import dataclass

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
) -> BGNBD:
    """The maximum-likelihood BG/NBD model of these histories (``x`` repeat purchases, ``t_x``
    and ``T`` in one time unit), each counted ``weights`` times (default: customers with the
    same history are grouped here). Raises :class:`FitError` without any history, for a
    history that cannot be, or when the optimiser fails."""
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
    histories = _Histories(x, t_x, T, counts / total)
    scale = max(float(np.average(T, weights=counts)), 1e-6)
    result = minimize(
        _value_and_gradient,
        np.log([1.0, scale, 1.0, 1.0]),
        args=(histories,),
        jac=True,
        method="L-BFGS-B",
        bounds=[BOUNDS] * 4,
        options={"maxiter": 1000, "ftol": 1e-13, "gtol": 1e-9},
    )
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


class _Histories:
    """Histories as the likelihood reads them: the special functions of ``x`` depend on ``x``
    alone and the logarithms on ``T`` or ``t_x`` alone, so each is computed on the distinct
    values (a few hundred) and gathered, not once per history."""

    def __init__(self, x: Array, t_x: Array, T: Array, w: Array) -> None:
        self.w = w
        self.x, self.x_at = np.unique(x, return_inverse=True)
        self.T, self.T_at = np.unique(T, return_inverse=True)
        self.t_x, self.t_at = np.unique(t_x, return_inverse=True)
        self.repeat = x > 0
        self.xs = x


def _value_and_gradient(log_params: Array, h: _Histories) -> tuple[float, Array]:
    """Minus the weighted log-likelihood at ``log_params`` and its gradient in log space.

    ln L = A1 + A2 + ln(exp(A3) + [x > 0] exp(A4)), with
    A1 = lngamma(r+x) - lngamma(r) + r ln(alpha), A2 = ln B(a, b+x) - ln B(a, b),
    A3 = -(r+x) ln(alpha+T), A4 = ln a - ln(b+x-1) - (r+x) ln(alpha+t_x).
    """
    r, alpha, a, b = np.exp(log_params)
    x, w, repeat, ux = h.xs, h.w, h.repeat, h.x
    # Functions of x alone, on its distinct values.
    a1 = (gammaln(r + ux) - gammaln(r) + r * np.log(alpha))[h.x_at]
    a2 = (betaln(a, b + ux) - betaln(a, b))[h.x_at]
    d_r_x = (psi(r + ux) - psi(r) + np.log(alpha))[h.x_at]
    d_a_x = (psi(a + b) - psi(a + b + ux))[h.x_at]
    d_b_x = (psi(a + b) + psi(b + ux) - psi(b) - psi(a + b + ux))[h.x_at]
    b_x = np.where(ux > 0, b + ux - 1, 1.0)  # only read where x > 0
    log_b_x, inv_b_x = np.log(b_x)[h.x_at], (1 / b_x)[h.x_at]
    # Functions of T and of t_x alone.
    log_t = np.log(alpha + h.T)[h.T_at]
    inv_t = (1 / (alpha + h.T))[h.T_at]
    log_tx = np.log(alpha + h.t_x)[h.t_at]
    inv_tx = (1 / (alpha + h.t_x))[h.t_at]
    rx = r + x
    a3 = -rx * log_t
    a4 = np.where(repeat, np.log(a) - log_b_x - rx * log_tx, -np.inf)
    top = np.maximum(a3, a4)
    e3, e4 = np.exp(a3 - top), np.exp(a4 - top)
    tail = top + np.log(e3 + e4)
    ll = a1 + a2 + tail
    w3 = e3 / (e3 + e4)
    w4 = 1 - w3
    # d/dθ of each term, then times θ for the log parameters.
    d_r = d_r_x - w3 * log_t - np.where(repeat, w4 * log_tx, 0.0)
    d_alpha = r / alpha - w3 * rx * inv_t - np.where(repeat, w4 * rx * inv_tx, 0.0)
    d_a = d_a_x + w4 / a
    d_b = d_b_x - np.where(repeat, w4 * inv_b_x, 0.0)
    gradient = np.array([w @ d_r * r, w @ d_alpha * alpha, w @ d_a * a, w @ d_b * b])
    return float(-(w @ ll)), -gradient


def _arrays(x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> tuple[Array, Array, Array]:
    return (
        np.asarray(x, dtype=np.float64),
        np.asarray(t_x, dtype=np.float64),
        np.asarray(T, dtype=np.float64),
    )
