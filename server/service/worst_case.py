"""The worst plausible scenario by full revaluation (issue: scenario risk): Studer's maximum
loss of a portfolio over the ellipsoid of factor moves x' S^-1 x <= c, and the reverse
question, the most plausible scenario (the smallest c) whose maximum loss reaches a target.

1. Factors and coordinates. The factors are the components of a list of shifts (the
   scenario language of pricegrid.server.domain.scenarios), a move x their sizes. With
   S = V diag(l) V' (eigenvalues below RANK_TOL x the largest taken as 0) and
   L = V_r diag(sqrt(l_r)) over the r directions kept, x = sqrt(c) L u maps the unit ball
   |u| <= 1 of R^r onto the ellipsoid x' S^+ x <= c, and x' S^+ x = c |u|^2 (S^+ = S^-1
   when S is definite).
2. The local model. Around a point u the portfolio P&L f is modelled as
   f(u) + g'p + p'Hp/2 from finite differences of step h (BUMP, in units of the ball's
   radius) on the stencil u, u +- h e_i, u +- h (e_i + e_j) (i < j), r^2 + r + 1 points:
       g_i  = (f(+i) - f(-i)) / 2h,       H_ii = (f(+i) - 2 f(u) + f(-i)) / h^2,
       H_ij = (f(++) + f(--) - f(+i) - f(-i) - f(+j) - f(-j) + 2 f(u)) / 2h^2,
   all second order in h and exact for a quadratic f. Every stencil point of one iteration
   (of every start) is one scenario set: one pass of ScenarioRevaluer.revalue_portfolio.
3. The step. The model's minimum over the ball, min b'v + v'Hv/2 s.t. |v| <= 1 with
   b = g - H u (the trust-region subproblem; J. J. More and D. C. Sorensen, "Computing a
   trust region step", SIAM J. Sci. Stat. Comput. 4(3) (1983) 553-572), solved on the
   eigen-decomposition of H: v(mu) = -(H + mu I)^-1 b, mu >= max(0, -l_min), either inside
   (mu = 0, H positive definite) or on the sphere, where 1/|v(mu)| = 1 is solved by Newton's
   method kept inside a bracket, and in the hard case (b orthogonal to the eigenspace of
   l_min) completed along its eigenvector. The candidate v is revalued (with its stencil)
   and kept when its P&L is below the current point's; otherwise the step is cut to a
   quarter along the segment (inside the ball) and revalued again.
4. Stops and starts. A start has converged when an accepted step improves the P&L by at
   most ``tolerance`` relative, when its model promises no more than that, or when its step
   falls below STEP_TOL; it stops unconverged after ``max_iterations`` passes. The starts,
   from the model at the base (u = 0): its trust-region solution (the delta-gamma Studer
   maximum loss, reported for comparison), +- the gradient's direction and +- the
   eigenvector of the most negative curvature on the sphere, and for the reverse question
   the previous radius's answer; a start that reaches another's point is dropped. The
   best point found is the answer: a local search from several starts, exact for linear
   and quadratic P&L, not a global guarantee for others.
5. The reverse question. M(c), the maximum loss at c, does not decrease with c. The
   smallest c with M(c) >= target: M at c_max (the ``max_level`` quantile) first, not
   reached when below the target (the answer is then the worst scenario at c_max);
   otherwise regula falsi with the Illinois modification on r = sqrt(c) over [0, r_max]
   (M(0) = 0) until |M - target| <= tolerance x target, at most ``radius_steps`` radii.
   The base model is computed once, at c_max, and rescaled (g by sqrt(c), H by c).
6. Failures. A trade that cannot be priced is never left out of the sums: on the base
   market the search is refused naming the trade's field (INVALID_ARGUMENT); at a point the
   search revalues (a vol shifted below zero, ...) it stops with FAILED_PRECONDITION naming
   the trade, the move and the field: the ellipsoid reaches markets the model cannot price.
7. The answer's P&L is one more revaluation of the move alone as a one-scenario set through
   ScenarioRun, the code path of a RunScenarioRisk run, which therefore reproduces it bit
   for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from pricegrid.server.domain import risk as risk_measures
from pricegrid.server.domain.errors import Code, FieldViolation, ServiceError, Violations
from pricegrid.server.domain.scenarios import Quantity, ScenarioSet, Shift, ShiftKind, Smile
from pricegrid.server.service.scenarios import Book, ScenarioRevaluer, ScenarioRun

__all__ = ["Subproblem", "trust_region_step", "WorstCaseQuestion", "WorstCase", "worst_case", "planned_revaluations",
           "whitening", "MAX_FACTORS", "MAX_ITERATIONS", "MAX_RADIUS_STEPS", "MAX_STARTS"]

#: caps: factors (components), iterations per start and radius, radii of the reverse question
MAX_FACTORS = 50
MAX_ITERATIONS = 100
MAX_RADIUS_STEPS = 100
#: the most starts searched at once (note 4: five from the base model, one warm)
MAX_STARTS = 6
#: the finite-difference step, in units of the ball's radius (note 2)
BUMP = 1e-3
#: eigenvalues of S below this times the largest do not move (note 1)
RANK_TOL = 1e-12
#: a step shorter than this (in u) is no step (note 4)
STEP_TOL = 1e-10
#: two starts closer than this (in u) are one
SAME_POINT = 1e-7
_TINY = 1e-300


# ------------------------------------------------------------------ trust-region subproblem
@dataclass(frozen=True)
class Subproblem:
    """The minimiser ``step`` of b'v + v'Hv/2 over |v| <= radius, its ``value``, the
    multiplier ``mu`` (0 inside) and whether it was the hard case."""

    step: np.ndarray
    value: float
    mu: float
    hard_case: bool


def trust_region_step(b, h, radius: float = 1.0) -> Subproblem:
    """The trust-region subproblem min b'v + v'Hv/2 s.t. |v| <= radius, exactly (note 3):
    ``b`` (n,), ``h`` (n, n) symmetric (symmetrised here)."""
    b = np.asarray(b, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    h = 0.5 * (h + h.T)
    n = b.size
    if n == 0:
        return Subproblem(np.zeros(0), 0.0, 0.0, False)
    lam, q = np.linalg.eigh(h)
    beta = q.T @ b
    bnorm = float(np.linalg.norm(b))
    scale = max(float(np.abs(lam).max()), bnorm / radius, _TINY)

    def value(v):
        return float(b @ v + 0.5 * v @ h @ v)

    if lam[0] > 0.0:  # inside, when the Newton point is
        v = -(q @ (beta / lam))
        if np.linalg.norm(v) <= radius:
            return Subproblem(v, value(v), 0.0, False)
    lo = max(0.0, -float(lam[0]))
    near = lam <= lam[0] + 1e-12 * scale  # the eigenspace of the smallest eigenvalue
    if lam[0] <= 0.0 and float(np.linalg.norm(beta[near])) <= 1e-14 * (bnorm + scale * radius):
        rest = ~near
        w = -(q[:, rest] @ (beta[rest] / (lam[rest] + lo)))
        wn = float(np.linalg.norm(w))
        if wn <= radius:  # the hard case: complete along the eigenvector to the sphere
            v = w + math.sqrt(max(radius * radius - wn * wn, 0.0)) * q[:, 0]
            return Subproblem(v, value(v), lo, True)
        beta = np.where(near, 0.0, beta)
    hi = lo + bnorm / radius  # there |v| <= |b| / (l_min + mu) <= radius
    mu = hi
    for _ in range(200):
        d = lam + mu
        if not np.all(d > 0.0):  # at the bracket's open end: bisect
            mu = 0.5 * (lo + hi)
            continue
        vn2 = float(np.sum((beta / d) ** 2))
        vn = math.sqrt(vn2)
        phi = 1.0 / vn - 1.0 / radius if vn > 0.0 else math.inf
        if abs(phi) * radius <= 1e-15 or hi - lo <= 4e-16 * max(hi, _TINY):
            break
        if phi < 0.0:
            lo = mu
        else:
            hi = mu
        dphi = float(np.sum(beta ** 2 / d ** 3)) / (vn2 * vn) if vn > 0.0 else 0.0
        nxt = mu - phi / dphi if dphi > 0.0 else math.nan
        mu = nxt if lo < nxt < hi else 0.5 * (lo + hi)
    v = -(q @ (beta / (lam + mu)))
    vn = float(np.linalg.norm(v))
    if vn > radius:  # the last rounding: onto the sphere
        v *= radius / vn
    elif vn < radius and mu > 0.0:
        # near the hard case |v(mu)| moves more than mu's last digit allows: reach the sphere
        # along the eigenvector of l_min (which H + mu I nearly annihilates), the better way
        z = q[:, 0]
        vz = float(v @ z)
        root = math.sqrt(max(vz * vz + radius * radius - vn * vn, 0.0))
        v = min((v + (-vz + root) * z, v + (-vz - root) * z), key=value)
    return Subproblem(v, value(v), mu, False)


# ------------------------------------------------------------------ the question
@dataclass(frozen=True)
class WorstCaseQuestion:
    """Maximum loss at ``level`` or, with ``loss``, the reverse question (note 5). ``dof``:
    None for the number of factors."""

    level: Optional[float] = 0.99
    loss: Optional[float] = None
    dof: Optional[float] = None
    max_iterations: int = 20
    tolerance: float = 1e-9
    max_level: float = 1.0 - 1e-12
    radius_steps: int = 30
    label: str = "worst-case"

    @property
    def reverse(self) -> bool:
        return self.loss is not None

    def violations(self, out: Violations) -> Violations:
        """Every setting out of range, named as the request's fields."""
        def inside(x) -> bool:
            return x is not None and math.isfinite(x) and 0.0 < x < 1.0

        if self.reverse:
            if not (math.isfinite(self.loss) and self.loss > 0.0):
                out.add("loss", f"must be finite and > 0 (got {self.loss!r})")
        elif not inside(self.level):
            out.add("level", f"must be strictly between 0 and 1 (got {self.level!r})")
        if self.dof is not None and not (math.isfinite(self.dof) and 0.5 <= self.dof <= 10_000):
            out.add("dof", f"must be between 0.5 and 10,000 (got {self.dof!r})")
        if self.max_iterations > MAX_ITERATIONS:
            out.add("max_iterations", f"{self.max_iterations} iterations; at most {MAX_ITERATIONS}",
                    Code.RESOURCE_EXHAUSTED)
        elif self.max_iterations < 1:
            out.add("max_iterations", f"at least 1 (got {self.max_iterations})")
        if not inside(self.tolerance):
            out.add("tolerance", f"must be strictly between 0 and 1 (got {self.tolerance!r})")
        if not inside(self.max_level):
            out.add("max_level", f"must be strictly between 0 and 1 (got {self.max_level!r})")
        if self.radius_steps > MAX_RADIUS_STEPS:
            out.add("radius_steps", f"{self.radius_steps} radii; at most {MAX_RADIUS_STEPS}", Code.RESOURCE_EXHAUSTED)
        elif self.radius_steps < 1:
            out.add("radius_steps", f"at least 1 (got {self.radius_steps})")
        return out


def planned_revaluations(trades: int, factors: int, question: WorstCaseQuestion) -> int:
    """The most revaluations (trades x scenarios) a search can take: every pass of every
    radius with all starts, and the answer's own (the cost bounded before it runs)."""
    points = factors * factors + factors + 1
    radii = question.radius_steps + 1 if question.reverse else 1
    return trades * (points * (1 + MAX_STARTS * question.max_iterations) * radii + 1)


def whitening(covariance: np.ndarray) -> np.ndarray:
    """L (k x r) with S = L L' over the r directions kept (note 1)."""
    lam, v = np.linalg.eigh(np.asarray(covariance, dtype=np.float64))
    keep = lam > RANK_TOL * max(float(lam[-1]), 0.0)
    return v[:, keep] * np.sqrt(lam[keep])


# ------------------------------------------------------------------ the answer
@dataclass
class WorstCase:
    components: list[str]
    move: np.ndarray              # (k,) in the shifts' units
    pnl: float                    # the portfolio's, full revaluation (negative: a loss)
    trade_pnl: np.ndarray         # (trades,)
    radius2: float                # x' S^+ x
    radius_level: float           # P(chi2(dof) <= radius2)
    bound2: float                 # c searched (the level's, or the reverse question's)
    dof: float
    delta_gamma_move: np.ndarray  # (k,)
    delta_gamma_pnl: float
    iterations: int               # passes
    revaluations: int
    converged: bool
    achieved_tolerance: float
    reached: bool
    radius_steps: int
    scenario: ScenarioSet
    market_used: object = None
    priced_by: object = None


@dataclass
class _Start:
    v: np.ndarray                       # the point to revalue next (with its stencil)
    u: Optional[np.ndarray] = None      # the accepted point
    f: float = math.inf
    step: Optional[np.ndarray] = None   # v - u
    iterations: int = 0
    active: bool = True
    converged: bool = False
    achieved: float = math.inf


@dataclass
class _Best:
    u: np.ndarray
    f: float
    converged: bool
    achieved: float


def _stencil(r: int) -> np.ndarray:
    """(r, r^2 + r + 1) offsets of note 2, in units of the step: 0, +e_i, -e_i, then
    +(e_i + e_j), -(e_i + e_j) for i < j."""
    eye = np.eye(r)
    pairs = [eye[i] + eye[j] for i in range(r) for j in range(i + 1, r)]
    pair = np.array(pairs).T if pairs else np.zeros((r, 0))
    return np.hstack([np.zeros((r, 1)), eye, -eye, pair, -pair])


def _model(values: np.ndarray, r: int, h: float) -> tuple[float, np.ndarray, np.ndarray]:
    """(f(u), g, H) from the stencil's values (note 2)."""
    f0 = float(values[0])
    plus, minus = values[1:1 + r], values[1 + r:1 + 2 * r]
    g = (plus - minus) / (2.0 * h)
    hess = np.diag((plus - 2.0 * f0 + minus) / (h * h))
    n = r * (r - 1) // 2
    pp, mm = values[1 + 2 * r:1 + 2 * r + n], values[1 + 2 * r + n:]
    i, j = np.triu_indices(r, 1)
    off = (pp + mm - plus[i] - minus[i] - plus[j] - minus[j] + 2.0 * f0) / (2.0 * h * h)
    hess[i, j] = off
    hess[j, i] = off
    return f0, g, hess


class _Search:
    """Maximum loss over |u| <= 1 at a given c (notes 2-4), each pass one revaluation."""

    def __init__(self, evaluate: Callable[[np.ndarray], np.ndarray], whiten: np.ndarray, question: WorstCaseQuestion):
        self.evaluate = evaluate  # moves (k, m) -> portfolio P&L (m,)
        self.whiten = whiten
        self.r = whiten.shape[1]
        self.offsets = _stencil(self.r) * BUMP
        self.question = question
        self.passes = 0

    def moves(self, c: float, points: np.ndarray) -> np.ndarray:
        return math.sqrt(c) * (self.whiten @ points)

    def base_model(self, c: float) -> tuple[np.ndarray, np.ndarray]:
        values = self.evaluate(self.moves(c, self.offsets))
        self.passes += 1
        _, g, hess = _model(values, self.r, BUMP)
        return g, hess

    def starts(self, g: np.ndarray, hess: np.ndarray, warm: Optional[np.ndarray]) -> list[np.ndarray]:
        points = [trust_region_step(g, hess).step]
        gn = float(np.linalg.norm(g))
        if gn > 0.0:
            points += [-g / gn, g / gn]
        lam, vec = np.linalg.eigh(hess)
        if self.r and lam[0] < -1e-8 * (gn + float(np.abs(lam).max())):
            points += [vec[:, 0], -vec[:, 0]]
        if warm is not None:
            points.append(warm)
        out: list[np.ndarray] = []
        for p in points:
            if all(np.linalg.norm(p - q) > SAME_POINT for q in out):
                out.append(p)
        return out[:MAX_STARTS]

    def maximize(self, c: float, g0: np.ndarray, h0: np.ndarray, warm: Optional[np.ndarray] = None) -> _Best:
        q = self.question
        starts = [_Start(v) for v in self.starts(g0, h0, warm)]
        best: Optional[_Start] = None
        size = self.offsets.shape[1]
        while True:
            active = [s for s in starts if s.active]
            if not active:
                break
            points = np.hstack([s.v[:, None] + self.offsets for s in active])
            values = self.evaluate(self.moves(c, points))
            self.passes += 1
            for n, s in enumerate(active):
                f0, g, hess = _model(values[n * size:(n + 1) * size], self.r, BUMP)
                s.iterations += 1
                if s.u is None or f0 < s.f:
                    first = s.u is None
                    if not first:
                        s.achieved = (s.f - f0) / max(abs(s.f), abs(f0), _TINY)
                    s.u, s.f = s.v, f0
                    if best is None or f0 < best.f:
                        best = s
                    if not first and s.achieved <= q.tolerance:
                        s.active, s.converged = False, True
                        continue
                    sub = trust_region_step(g - hess @ s.u, hess)
                    step = sub.step - s.u
                    promised = -float(g @ step + 0.5 * step @ hess @ step) / max(abs(f0), _TINY)
                    if np.linalg.norm(step) <= STEP_TOL or promised <= q.tolerance:
                        s.active, s.converged = False, True
                        s.achieved = min(s.achieved, max(promised, 0.0))
                        continue
                    s.step, s.v = step, s.u + step
                else:  # no better: a quarter of the step, along the segment (inside the ball)
                    s.step = s.step / 4.0
                    if np.linalg.norm(s.step) <= STEP_TOL:
                        s.active, s.converged = False, True
                        continue
                    s.v = s.u + s.step
                if s.iterations >= q.max_iterations:
                    s.active = False
            for s in starts:  # a start that reached a better one's point is that one
                if s.active and s.u is not None and any(
                        t is not s and t.u is not None and t.f <= s.f and np.linalg.norm(t.u - s.u) <= SAME_POINT
                        for t in starts):
                    s.active = False
        achieved = best.achieved if math.isfinite(best.achieved) else 0.0
        return _Best(best.u, best.f, best.converged, achieved)


# ------------------------------------------------------------------ the use case
def worst_case(revaluer: ScenarioRevaluer, books: Sequence[Book], shifts: Sequence[Shift], smile: Smile,
               covariance: np.ndarray, question: WorstCaseQuestion, *, rows: int, trade_ids: Sequence[str],
               block_cells: int = 524_288, should_continue=None) -> WorstCase:
    """Maximum loss (or the reverse question) of the portfolio's ``books`` (``rows`` trades
    in all) over the covariance's ellipsoid, by full revaluation (module notes).
    ``covariance``: k x k, checked by the caller (symmetric, positive semi-definite); the cost
    is the caller's to bound (planned_revaluations); ``block_cells``: the answer's blocks, as
    the RunScenarioRisk run that reproduces it cuts them."""
    shifts = tuple(shifts)
    bad = Violations()
    for i, s in enumerate(shifts):
        if s.kind == ShiftKind.FIXED or s.quantity == Quantity.TIME:
            bad.add(f"shifts[{i}].kind", "a factor moves a value: absolute, relative or log, not fixed or a time roll")
    bad.raise_if_any()
    components = [label for s in shifts for label in s.component_labels()]
    k = len(components)
    whiten = whitening(covariance)
    if whiten.shape[1] == 0:
        raise ServiceError(Code.INVALID_ARGUMENT, "covariance: zero: no factor moves",
                           [FieldViolation("covariance", "zero: no factor moves")])
    dof = float(k if question.dof is None else question.dof)
    state = {"revaluations": 0, "checked": False, "market_used": None, "priced_by": None}

    def stop() -> None:
        code = should_continue() if should_continue is not None else None
        if code is not None:
            what = "deadline exceeded" if code == Code.DEADLINE_EXCEEDED else "cancelled by the caller"
            raise ServiceError(code, f"worst-case search stopped between passes: {what}")

    def evaluate(moves: np.ndarray) -> np.ndarray:
        stop()
        m = moves.shape[1]
        scenarios = ScenarioSet(shifts, np.ascontiguousarray(moves), tuple(f"p{j}" for j in range(m)), smile,
                                sizes_path="", own_labels=False)  # the search's own points
        r = revaluer.revalue_portfolio(books, scenarios, should_continue=should_continue)
        if not state["checked"]:
            _check_base(r.base_errors, trade_ids)
            state.update(checked=True, market_used=r.market_used, priced_by=r.priced_by)
        total = np.zeros(m)
        for block in r.blocks:
            if block.errors or block.failed:
                raise _failure(block, moves, components, trade_ids)
            total += block.pnl.sum(axis=0)
        state["revaluations"] += rows * m
        return total

    search = _Search(evaluate, whiten, question)
    if question.reverse:
        c, best, g0, h0, steps = _reverse(search, question, dof)
    else:
        c = risk_measures.chi2_quantile(question.level, dof)
        g0, h0 = search.base_model(c)
        best = search.maximize(c, g0, h0)
        steps = 0
    # the answer: the move alone, through a scenario run's own path (note 7)
    move = search.moves(c, best.u[:, None])
    stop()
    label = question.label
    answer = ScenarioSet(shifts, move, (label,), smile)
    r = revaluer.revalue_portfolio(books, answer, block_cells=block_cells, should_continue=should_continue)
    if not state["checked"]:
        _check_base(r.base_errors, trade_ids)
    run = ScenarioRun(r, rows, 1, [0.99], [0.975], trade_risk=False)
    trade_pnl = np.empty(rows)
    while (block := run.next_block()) is not None:
        if block.errors or block.failed:
            raise _failure(block, move, components, trade_ids)
        trade_pnl[block.start:block.stop] = block.pnl[:, 0]
    pnl = float(run.aggregates().portfolio_pnl[0])
    state["revaluations"] += rows
    radius2 = c * float(best.u @ best.u)
    dg = trust_region_step(g0, h0)
    reached = (not question.reverse) or -pnl >= question.loss * (1.0 - question.tolerance)
    return WorstCase(
        components=components, move=move[:, 0], pnl=pnl, trade_pnl=trade_pnl, radius2=radius2,
        radius_level=risk_measures.chi2_cdf(radius2, dof), bound2=c, dof=dof,
        delta_gamma_move=search.moves(c, dg.step[:, None])[:, 0], delta_gamma_pnl=dg.value,
        iterations=search.passes, revaluations=state["revaluations"], converged=best.converged,
        achieved_tolerance=best.achieved, reached=bool(reached), radius_steps=steps, scenario=answer,
        market_used=r.market_used, priced_by=r.priced_by)


def _reverse(search: _Search, q: WorstCaseQuestion, dof: float):
    """(c, best, g, H at c, radii tried) of the reverse question (note 5)."""
    c_max = risk_measures.chi2_quantile(q.max_level, dof)
    g_ref, h_ref = search.base_model(c_max)

    def at(r: float):
        c = r * r
        g, hess = g_ref * (r / math.sqrt(c_max)), h_ref * (c / c_max)
        return c, g, hess

    r_max = math.sqrt(c_max)
    best = search.maximize(c_max, g_ref, h_ref)
    target = q.loss
    if -best.f < target * (1.0 - q.tolerance) or abs(-best.f - target) <= q.tolerance * target:
        return c_max, best, g_ref, h_ref, 0
    lo_r, lo_g = 0.0, -target
    hi_r, hi_g, hi_best = r_max, -best.f - target, best
    side, steps = 0, 0
    answer = (r_max, best)
    for _ in range(q.radius_steps):
        r = hi_r - hi_g * (hi_r - lo_r) / (hi_g - lo_g)
        if not lo_r < r < hi_r:
            r = 0.5 * (lo_r + hi_r)
        if not lo_r < r < hi_r:  # the bracket is down to rounding
            break
        c, g, hess = at(r)
        found = search.maximize(c, g, hess, warm=hi_best.u)
        steps += 1
        gap = -found.f - target
        if abs(gap) <= q.tolerance * target:
            answer = (r, found)
            break
        if gap > 0.0:
            hi_r, hi_g, hi_best = r, gap, found
            if side == 1:
                lo_g *= 0.5
            side = 1
        else:
            lo_r, lo_g = r, gap
            if side == -1:
                hi_g *= 0.5
            side = -1
        answer = (hi_r, hi_best)
    r, found = answer
    converged = found.converged and abs(-found.f - target) <= q.tolerance * target
    c, g, hess = at(r)
    return c, _Best(found.u, found.f, converged, found.achieved), g, hess, steps


def _check_base(errors, trade_ids) -> None:
    if not errors:
        return
    bad = Violations()
    for e in errors:
        bad.add(e.field, f"trade {trade_ids[e.row]} cannot be priced on the base market: {e.message}")
    raise bad.error()


def _failure(block, moves: np.ndarray, components, trade_ids) -> ServiceError:
    bad = Violations()
    for e in block.errors[:20]:
        where = ", ".join(f"{name}={x:.6g}" for name, x in zip(components, moves[:, e.scenario]))
        bad.add(e.field, f"trade {trade_ids[e.trade]} cannot be priced at the move {where}: {e.message} (the "
                         "ellipsoid reaches markets the model cannot price: a LOG shift, a lower level or a smaller "
                         "covariance keeps it inside)", Code.FAILED_PRECONDITION)
    if not bad:
        bad.add("covariance", "a revaluation failed inside the ellipsoid", Code.FAILED_PRECONDITION)
    return bad.error()
