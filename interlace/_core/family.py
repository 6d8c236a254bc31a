"""Response families and link functions of a generalized linear mixed model.

A family gives, elementwise in JAX (McCullagh & Nelder 1989, ch. 2; R's ``family``
objects, whose clamping at the edges of the link we follow so that fits agree with
``glmer`` where a mean runs to 0 or 1):

* the inverse link ``mu = g^-1(eta)`` and its derivative ``d mu / d eta``;
* the variance function ``V(mu)``;
* the deviance residuals ``d_i = 2 w_i (l_i(y_i; y_i) - l_i(y_i; mu_i))`` (saturated minus
  fitted log-likelihood, prior weight ``w_i``), whose sum the Laplace deviance uses;
* ``-2 log p(y_i | mu_i)`` with every constant (R's ``family$aic`` before its
  ``+ 2 * rank``), from which lme4 reports ``logLik``;
* the start ``mu_i`` of the iterations (R's ``family$initialize``).

Binomial responses are proportions ``y_i`` in ``[0, 1]`` with the number of trials as prior
weight (a 0/1 response has weight 1); Poisson and negative binomial responses are counts.
The negative binomial has ``V(mu) = mu + mu^2 / k`` with size ``k`` (R's
``negative.binomial(theta)``, MASS's ``theta``): fixed when the family is made with a size,
else estimated with the other parameters (lme4's ``glmer.nb``). Methods that depend on
``k`` take it as ``size`` (data, so that a search over ``k`` compiles once); the other
families ignore it. The dispersion of all three is 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, ndtr, ndtri

from .._base.errors import ModelSpecError

__all__ = [
    "Family",
    "family_of",
    "binomial",
    "poisson",
    "negative_binomial",
    "FAMILIES",
    "LINKS",
]

_EPS = 2.220446049250313e-16  # R's .Machine$double.eps
_LOGIT_EDGE = 30.0  # R's logit link: eta beyond +-30 maps to mu at the edge
_PROBIT_EDGE = 8.125890664701906  # -qnorm(.Machine$double.eps)

FAMILIES = {
    "binomial": ("logit", "probit", "cloglog"),
    "poisson": ("log",),
    "negative_binomial": ("log",),
}
LINKS = {"binomial": "logit", "poisson": "log", "negative_binomial": "log"}


def _namespace(a):
    """``(array module, normal cdf, its inverse)``: numpy and scipy's for a numpy array,
    else JAX's."""
    if isinstance(a, np.ndarray):
        from scipy.special import ndtr as np_ndtr  # imported on use
        from scipy.special import ndtri as np_ndtri

        return np, np_ndtr, np_ndtri
    return jnp, ndtr, ndtri


def _xlogy_ratio(y, mu, difference=None):
    """``y log(y / mu)``, 0 where ``y = 0`` (its limit); ``difference``: ``y - mu`` as the
    caller has it exactly (default: computed here).

    Where ``y`` is within half of ``mu``, taken as ``y log(u) r / (u - 1)`` with
    ``r = (y - mu) / mu`` and ``u = 1 + r`` rounded (Goldberg's form of ``log1p(r)``; ``r``
    itself where ``u`` rounds to 1): ``y / mu`` near
    1 is rounded to 1e-16 absolute, which ``y`` multiplies, so a count near 9e6 carried
    1e-9 of rounding into its deviance residual (of order 1), and a binomial row with 1e7
    trials as much; summed over rows, more than the decreases a line search looks for near
    the optimum (the fits ended on "deviance stopped changing",
    ``tests/test_glmm_high_counts.py``). The relative difference keeps its digits. One
    ``log`` per row, as before: XLA's CPU backend vectorises ``log`` but calls ``log1p``
    row by row, and a second logarithm per term made a VerbAgg evaluation 10-30% slower."""
    if difference is None:
        difference = y - mu
    safe = jnp.where(y > 0, y, 1.0)
    near = jnp.abs(difference) < 0.5 * mu  # elsewhere y / mu as it is
    ratio = jnp.where(near, difference / jnp.where(near, mu, 1.0), 0.0)
    u = 1.0 + ratio
    one = u == 1.0
    log_u = jnp.log(jnp.where(near, u, safe / mu))
    scale = jnp.where(near & ~one, ratio / jnp.where(one, 1.0, u - 1.0), 1.0)
    log_ratio = jnp.where(near & one, ratio, log_u * scale)
    return jnp.where(y > 0, y * log_ratio, 0.0)


@dataclass(frozen=True)
class Family:
    """A response distribution with its link (static: hashable, a jit argument)."""

    name: str  # "binomial", "poisson" or "negative_binomial"
    link: str  # "logit", "probit", "cloglog" (binomial); "log" (counts)
    size: float | None = None  # negative binomial: a fixed k (None: estimated)

    @property
    def estimates_size(self) -> bool:
        """A negative binomial whose size ``k`` is a parameter of the fit."""
        return self.name == "negative_binomial" and self.size is None

    @property
    def label(self) -> str:
        """The family as glmer's summary names it."""
        if self.name == "negative_binomial":
            return (
                "Negative Binomial" if self.size is None else f"Negative Binomial({self.size:.4g})"
            )
        return self.name

    @property
    def canonical(self) -> bool:
        """Whether the link is the family's canonical one (binomial's logit, Poisson's
        log): then Fisher scoring is Newton's method. A negative binomial's log link is
        not (its canonical link is ``log(mu / (mu + k))``)."""
        return (self.name, self.link) in (("binomial", "logit"), ("poisson", "log"))

    def linkfun(self, mu):
        """``eta = g(mu)``; numpy in, numpy out (set-up and results outside compiled
        code: no per-operation compiles), JAX otherwise."""
        xp, _, inverse_cdf = _namespace(mu)
        if self.link == "logit":
            return xp.log(mu / (1.0 - mu))
        if self.link == "probit":
            return inverse_cdf(mu)
        if self.link == "cloglog":
            return xp.log(-xp.log1p(-mu))
        return xp.log(mu)

    def linkinv(self, eta):
        """``mu = g^-1(eta)``, kept inside ``(0, 1)`` or above 0 as R's links keep it;
        numpy in, numpy out, JAX otherwise."""
        xp, cdf, _ = _namespace(eta)
        if self.link == "logit":
            e = xp.exp(xp.clip(eta, -_LOGIT_EDGE, _LOGIT_EDGE))
            return e / (1.0 + e)
        if self.link == "probit":
            return cdf(xp.clip(eta, -_PROBIT_EDGE, _PROBIT_EDGE))
        if self.link == "cloglog":
            return xp.clip(-xp.expm1(-xp.exp(xp.minimum(eta, 700.0))), _EPS, 1.0 - _EPS)
        return xp.maximum(xp.exp(eta), _EPS)

    def mu_eta(self, eta):
        """``d mu / d eta`` (R's ``mu.eta``)."""
        if self.link == "logit":
            e = jnp.exp(jnp.clip(eta, -_LOGIT_EDGE, _LOGIT_EDGE))
            inside = jnp.abs(eta) <= _LOGIT_EDGE
            return jnp.where(inside, e / (1.0 + e) ** 2, _EPS)
        if self.link == "probit":
            return jnp.maximum(jnp.exp(-0.5 * eta**2) / jnp.sqrt(2.0 * jnp.pi), _EPS)
        if self.link == "cloglog":
            e = jnp.minimum(eta, 700.0)
            return jnp.maximum(jnp.exp(e) * jnp.exp(-jnp.exp(e)), _EPS)
        return jnp.maximum(jnp.exp(eta), _EPS)

    def variance(self, mu, size=None):
        """``V(mu)``."""
        if self.name == "binomial":
            return mu * (1.0 - mu)
        if self.name == "negative_binomial":
            return mu + mu**2 / size
        return mu

    def deviance_residuals(self, y, mu, weights, size=None):
        """``d_i`` (module docstring): their sum is the GLM deviance."""
        if self.name == "binomial":
            failures = _xlogy_ratio(1.0 - y, 1.0 - mu, mu - y)
            return 2.0 * weights * (_xlogy_ratio(y, mu) + failures)
        if self.name == "negative_binomial":
            k = size
            # log1p: (y + k) log((y + k) / (mu + k)) loses every digit once k >> y, mu
            return 2.0 * weights * (_xlogy_ratio(y, mu) - (y + k) * jnp.log1p((y - mu) / (mu + k)))
        return 2.0 * weights * (_xlogy_ratio(y, mu) - (y - mu))

    def minus_two_log_density(self, y, mu, weights, size=None):
        """``-2 log p(y_i | mu_i)`` with all constants (R's ``family$aic`` terms), per row:
        binomial ``(w / m) (log C(m, m y) + m y log mu + m (1 - y) log(1 - mu))`` with
        ``m = round(w)`` trials (``w / m = 1`` for whole trials; rows with ``m = 0`` add
        nothing: lme4's ``binomialDist::aic``); Poisson ``w (y log mu - mu - log y!)``; negative
        binomial ``w (log G(y + k) - log G(k) - log y! + k log(k / (k + mu))
        + y log(mu / (k + mu)))``, taken as its deviance residual plus its saturated density
        (:func:`_nb_saturated_density`), whose log-gammas' large terms cancel in closed form."""
        if self.name == "negative_binomial":
            return self.deviance_residuals(y, mu, weights, size) + _nb_saturated_density(
                y, weights, size
            )
        return self._kernel(y, mu, weights) + self._data_terms(y, weights, jnp, gammaln)

    def minus_two_log_likelihood(self, y, mu, weights, size=None, constant=None):
        """``sum_i -2 log p(y_i | mu_i)`` (:meth:`minus_two_log_density` summed), with the
        terms in the data alone (``log C(m, m y)``, ``log y!``) taken from ``constant``
        (:meth:`density_constant`) when given: an evaluation loop need not recompute
        their log-gammas at every call (a tenth of a VerbAgg evaluation).

        The part that depends on ``mu`` is summed as the deviance residuals ``d_i``, with
        the kernel at the saturated fit ``mu_i = y_i`` added apart: ``-2 log p(y | mu) =
        d(y, mu) - 2 log p(y | y)`` by the deviance's definition (module docstring). The
        kernel itself, ``y log mu - mu`` and the like, is of the size of ``y log y`` per
        row (1.8e6 for a count of 1.6e5), so its sum carried rounding of 1e-6 that moved
        with the last digits of ``mu``: values at points 1e-11 apart differed by 1.4e-6,
        more than the decreases the line search looks for near the optimum of a
        high-count model, which then stalled (``tests/test_glmm_high_counts.py``).
        ``d_i`` is of order 1, and its sum is added to the data's terms after they are
        summed. A negative binomial's saturated terms move with its size: with the data's
        ``log y!`` they are taken per row in a form whose large terms cancel in closed
        form (:func:`_nb_saturated_density`), its terms in the data alone again from
        ``constant``. Binomial rows whose
        trials or successes are not whole numbers, where lme4's density rounds them
        (:func:`_trial_share`) and the identity does not hold, keep the direct kernel."""
        if constant is None:
            constant = jnp.sum(self._constant_terms(y, weights, jnp, gammaln))
        moving = self.deviance_residuals(y, mu, weights, size)
        if self.name == "negative_binomial":
            # the saturated terms move with the size: their part in the size, in a form
            # without the cancellation of log-gammas (_nb_saturated_density), then the
            # data's part (constant)
            return jnp.sum(moving) + (jnp.sum(_nb_size_terms(y, weights, size)) + constant)
        saturated = self._kernel(y, y, weights)  # the kernel at mu = y, where d = 0
        if self.name == "binomial":
            m, k = jnp.round(weights), jnp.round(weights * y)
            whole = (m > 0) & (jnp.abs(weights - m) <= 1e-9 * m)
            whole = whole & (jnp.abs(weights * y - k) <= 1e-9 * m)
            moving = jnp.where(whole, moving, self._kernel(y, mu, weights))
            saturated = jnp.where(whole, saturated, 0.0)
        # the large terms in the data alone first (they nearly cancel), then the sum in mu:
        # summed row by row with them, d_i would be rounded to their last place
        return jnp.sum(moving) + (jnp.sum(saturated) + constant)

    def density_constant(self, y, weights):
        """``sum_i`` of the data-only terms of ``-2 log p(y_i | mu_i)`` as
        :meth:`minus_two_log_likelihood` groups them: binomial ``-2 log C(m_i, m_i y_i)``
        (rows with ``m_i > 0``), Poisson ``2 w_i log y_i!``, negative binomial
        :func:`_nb_data_terms`. numpy in (scipy's log-gamma), numpy out; JAX in, JAX out."""
        if isinstance(y, np.ndarray) and isinstance(weights, np.ndarray):
            from scipy.special import gammaln as np_gammaln  # imported on use

            with np.errstate(invalid="ignore"):
                return np.sum(self._constant_terms(y, weights, np, np_gammaln))
        return jnp.sum(self._constant_terms(y, weights, jnp, gammaln))

    def _constant_terms(self, y, weights, xp, lgamma):
        if self.name == "negative_binomial":
            return _nb_data_terms(y, weights, xp, lgamma)
        return self._data_terms(y, weights, xp, lgamma)

    def _data_terms(self, y, weights, xp, lgamma):
        if self.name == "binomial":
            k, m = xp.round(weights * y), xp.round(weights)
            logc = lgamma(m + 1.0) - lgamma(k + 1.0) - lgamma(m - k + 1.0)
            return -2.0 * _trial_share(weights, m, xp) * logc
        return 2.0 * weights * lgamma(y + 1.0)

    def _kernel(self, y, mu, weights):
        """:meth:`minus_two_log_density` less :meth:`_data_terms`, per row (binomial and
        Poisson)."""
        if self.name == "binomial":
            k, m = jnp.round(weights * y), jnp.round(weights)
            ll = _xlogy(k, mu) + _xlogy(m - k, 1.0 - mu)
            return -2.0 * _trial_share(weights, m, jnp) * ll
        return -2.0 * weights * (_xlogy(y, mu) - mu)

    def start_mu(self, y, weights):
        """Starting means (R's ``family$initialize``)."""
        if self.name == "binomial":
            return (weights * y + 0.5) / (weights + 1.0)
        if self.name == "negative_binomial":
            return y + (y == 0) / 6.0
        return y + 0.1

    def working(self, y, eta, weights, size=None):
        """Fisher scoring's working weights and working response at ``eta``:
        ``w = weights (d mu/d eta)^2 / V(mu)``, ``z = eta + (y - mu) / (d mu/d eta)``."""
        mu = self.linkinv(eta)
        d = self.mu_eta(eta)
        return weights * d**2 / self.variance(mu, size), eta + (y - mu) / d

    def newton(self, y, eta, weights, size=None):
        """Newton's weights and working response at ``eta`` for the deviance:
        ``h = d''/2`` and ``z = eta - d' / d''`` from the derivatives of the deviance
        residuals in ``eta``: in closed form for a canonical link
        (:meth:`_canonical_newton`), by autodiff otherwise."""
        if self.canonical:
            return self._canonical_newton(y, eta, weights)

        def dev(e):
            return self.deviance_residuals(y, self.linkinv(e), weights, size)

        def first(e):
            return jax.jvp(dev, (e,), (jnp.ones_like(e),))[1]

        d1, d2 = jax.jvp(first, (eta,), (jnp.ones_like(eta),))
        h = 0.5 * d2
        safe = jnp.where(h != 0, h, 1.0)
        return h, jnp.where(h != 0, eta - 0.5 * d1 / safe, eta)

    def _canonical_newton(self, y, eta, weights):
        """:meth:`newton` for a canonical link, where ``d mu / d eta = V(mu)``: the deviance
        residuals' derivatives are ``d' = 2 w (mu - y)`` and ``d'' = 2 w V(mu)``, so
        ``h = w V(mu)`` and ``z = eta + w (y - mu) / h``, which are Fisher scoring's
        (McCullagh & Nelder 1989, sec. 2.5). ``V(mu)`` is taken as :meth:`mu_eta`, which
        keeps its digits where ``mu`` nears 1 (``e / (1 + e)^2``, not ``mu (1 - mu)``);
        differentiating the deviance residuals twice loses them where ``mu`` is near an
        edge. Where R's clamped inverse link is flat (``|eta| > 30`` for the logit,
        ``exp(eta)`` below EPS for the log), ``mu`` does not move with ``eta`` and both
        derivatives are 0, as autodiff of the clamped link gives them: ``h = 0`` there (not
        :meth:`working`'s floored weight), which is what lets a completely separated
        response show itself."""
        mu = self.linkinv(eta)
        moving = jnp.abs(eta) < _LOGIT_EDGE if self.link == "logit" else jnp.exp(eta) > _EPS
        h = jnp.where(moving, weights * self.mu_eta(eta), 0.0)
        safe = jnp.where(h != 0, h, 1.0)
        return h, jnp.where(h != 0, eta + weights * (y - mu) / safe, eta)


def _trial_share(weights, m, xp):
    """lme4's factor ``w / round(w)`` on a binomial row's log density (its C++
    ``binomialDist::aic``; 0 where ``round(w) = 0``): 1 for whole-number trials, so
    non-integer prior weights scale each row's log-likelihood as glmer's do."""
    return xp.where(m > 0, weights / xp.where(m > 0, m, 1.0), 0.0)


def _xlogy(x, y):
    """``x log y``, 0 where ``x = 0``."""
    return jnp.where(x != 0, x * jnp.log(jnp.where(x != 0, y, 1.0)), 0.0)


def family_of(family, link: str | None = None) -> Family:
    """A :class:`Family` from a name (``"binomial"``, ``"poisson"``,
    ``"negative_binomial"``) and optional link, or a :class:`Family` as it is. As an R
    user writes it, ``family=interlace.binomial`` (the constructor, not called) is its
    default family, and a string in R's call form, ``'binomial(link = "probit")'``,
    ``"binomial(probit)"`` or MASS's ``"negative.binomial(theta = 2)"`` (a fixed size),
    names the family, its link and size."""
    if isinstance(family, Family):
        return family
    if any(family is c for c in _CONSTRUCTORS):  # glmer's family = binomial
        return family()
    given, args = family, []
    if isinstance(family, str):
        family, args = family_call(family)
    name = _family_name(family, given)
    named_link, size = _link_and_size(name, args, given)
    if named_link is not None:
        if link is not None:
            raise ModelSpecError(f"family={given!r} names its link already; pass one link.")
        link = named_link
    link = LINKS[name] if link is None else str(link).lower()
    if link not in FAMILIES[name]:
        raise ModelSpecError(
            f"link={link!r} is not available for family {name!r}: use one of {FAMILIES[name]}."
        )
    if size is not None:  # only a negative binomial's call takes one
        return negative_binomial(size, link)
    return Family(name, link)


def family_call(family: str) -> tuple[str, list[tuple[str | None, str]]]:
    """``(name, arguments)`` of a family string in R's call form, each argument a
    ``(keyword or None, value)`` pair with its quotes removed
    (``'binomial(link = "probit")'``: ``("binomial", [("link", "probit")])``); a plain
    name as it is, with no arguments. The name is the string before the parenthesis."""
    call = _R_CALL.fullmatch(family)
    if call is None:
        return family, []
    args = []
    for part in filter(None, (a.strip() for a in call.group("args").split(","))):
        keyword, _, value = part.rpartition("=")
        args.append((keyword.strip() or None, value.strip().strip("\"'")))
    return call.group("name"), args


def split_family_call(family: str) -> tuple[str, str | None]:
    """``(name, link or None)`` of a family string in R's call form (:func:`family_call`):
    the link is the ``link =`` argument or the first one unnamed."""
    name, args = family_call(family)
    return name, _link_and_size(name, args, family)[0]


def _link_and_size(name: str, args, given) -> tuple[str | None, float | None]:
    """The link and the negative binomial's size among a call's ``args``
    (:func:`family_call`), matched as R matches a call: by keyword, then the unnamed ones
    in order to the rest of ``binomial(link)``, ``poisson(link)``,
    ``negative.binomial(theta, link)`` (MASS's name for the size; ``size =`` also taken).
    Anything else is refused, naming it."""
    nb = _canonical_key(name) == "negative_binomial"
    order = ("theta", "link") if nb else ("link",)
    takes = (
        f"it takes {', '.join(order)} (e.g. 'binomial(link = \"probit\")', "
        "'negative.binomial(theta = 2)')"
    )
    found: dict[str, str] = {}
    for keyword, value in args:
        if keyword is None:
            continue
        slot = "theta" if nb and keyword == "size" else keyword
        if slot not in order:
            raise ModelSpecError(
                f"family={given!r}: argument {keyword!r} is not one this family takes; {takes}."
            )
        if slot in found:
            raise ModelSpecError(f"family={given!r} gives its {slot} twice; give it once.")
        found[slot] = value
    unnamed = [value for keyword, value in args if keyword is None]
    free = [slot for slot in order if slot not in found]
    if len(unnamed) > len(free):
        raise ModelSpecError(f"family={given!r}: too many arguments; {takes}.")
    found.update(zip(free, unnamed))
    size = None
    if "theta" in found:
        try:
            size = float(found["theta"])
        except ValueError:
            raise ModelSpecError(
                f"family={given!r}: the size (theta) must be a number, got {found['theta']!r}."
            ) from None
    return found.get("link") or None, size


# R's call form of a family: binomial(probit), binomial(link = "probit"), poisson(),
# negative.binomial(theta = 2)
_R_CALL = re.compile(r"\s*(?P<name>[A-Za-z_.\- ]+?)\s*\((?P<args>[^()]*)\)\s*")
_ALIASES = {"nb": "negative_binomial", "negbin": "negative_binomial"}
# Families glmer knows that interlace does not fit, and why (or what to use instead)
_UNSUPPORTED = {
    "quasibinomial": "quasi-likelihood families have no likelihood for a mixed model to "
    "maximise (glmer refuses them too); for overdispersed binomial data add an "
    "observation-level random intercept, (1 | obs), with obs a column numbering the rows",
    "quasipoisson": "quasi-likelihood families have no likelihood for a mixed model to "
    "maximise (glmer refuses them too); for overdispersed counts use "
    "family='negative_binomial' (glmer.nb's model)",
    "gamma": "Gamma GLMMs are not available yet; model log(y) with a linear mixed model, or "
    "use lme4's glmer(family = Gamma)",
    "inverse_gaussian": "inverse Gaussian GLMMs are not available yet; use lme4's "
    "glmer(family = inverse.gaussian)",
}


def _canonical_key(name: str) -> str:
    """A family's name as :data:`FAMILIES` holds it, if it is one: lower case, ``.``,
    ``-`` and spaces as ``_`` (R's ``negative.binomial``), aliases resolved."""
    key = re.sub(r"[-. ]", "_", name.strip().lower())
    return _ALIASES.get(key, key)


def _family_name(family, given) -> str:
    """The canonical name of a supported family, or a :class:`ModelSpecError` about
    ``given`` (the argument as passed) that says what is supported (and why a family glmer
    knows is not)."""
    key = _canonical_key(family) if isinstance(family, str) else ""
    if key in FAMILIES:
        return key
    supported = (
        f"use one of {sorted(FAMILIES)} (or 'gaussian' for a linear mixed model), or a family "
        "object such as interlace.binomial(link='probit')"
    )
    why = _UNSUPPORTED.get(key)
    if why is not None:
        raise ModelSpecError(f"family={given!r} is not supported: {why}. Otherwise {supported}.")
    raise ModelSpecError(f"family={given!r} is not supported: {supported}.")


def binomial(link: str = "logit") -> Family:
    """The binomial family (R's ``binomial(link)``): ``"logit"``, ``"probit"``, ``"cloglog"``."""
    return family_of("binomial", link)


def poisson(link: str = "log") -> Family:
    """The Poisson family (R's ``poisson(link)``): ``"log"``."""
    return family_of("poisson", link)


def negative_binomial(size: float | None = None, link: str = "log") -> Family:
    """The negative binomial family, ``V(mu) = mu + mu^2 / size``: ``size`` estimated with
    the other parameters when None (lme4's ``glmer.nb``), else fixed (R's
    ``MASS::negative.binomial(theta = size)``)."""
    fam = family_of("negative_binomial", link)
    if size is None:
        return fam
    size = float(size)
    if not size > 0 or size != size or size == float("inf"):
        raise ModelSpecError(
            f"negative_binomial(size={size}): the size must be positive and finite."
        )
    return Family(fam.name, fam.link, size)


# family=binomial as glmer takes it: a constructor passed uncalled (family_of)
_CONSTRUCTORS = (binomial, poisson, negative_binomial)


def _nb_saturated_density(y, weights, k):
    """``-2 log p(y_i | mu_i = y_i)`` of the negative binomial with size ``k``, per row
    (its saturated kernel plus ``log y!``), ``-2 w B`` with

        B = log G(y + k) - log G(k) - log y! - k log(1 + y / k) - y log(1 + k / y).

    From ``y = 8`` on, Stirling's series ``log G(x) = (x - 1/2) log x - x + log(2 pi) / 2
    + R(x)`` (:func:`_stirling_remainder`) for ``G(y + k)`` and ``G(y + 1)`` cancels every
    term of the size of ``y log y`` in closed form:

        B = -y log(1 + 1 / y) - (log(y + k) + log(y + 1)) / 2 + R(y + k) - R(y + 1) + S(k),

    ``S(k) = k log k - log G(k) - (k - 1)``, which is ``log(k / 2 pi) / 2 + 1 - R(k)`` for
    ``k >= 8`` (a size far above the counts, as Poisson-like data give, no longer cancels
    ``k log k`` against ``log G(k)``). Every term is then of order ``log y`` or ``log k``;
    the log-gammas themselves are of the size of ``y log y``, 5.3e6 for a count of 4.4e5,
    and their rounding, ~1e-9 per row, moved with the size by more than the decreases a
    line search looks for near the optimum. Below ``y = 8``, the log-gammas' difference
    from the same series shifted by 8 (:func:`_shifted_rising_factorial`). (JAX's
    ``betaln`` would also avoid the large terms, but is off by up to 6e-7 for counts near
    10.)"""
    return _nb_size_terms(y, weights, k) + _nb_data_terms(y, weights, jnp, gammaln)


def _nb_size_terms(y, weights, k):
    """The part of :func:`_nb_saturated_density` that depends on the size ``k``, per row:
    ``-2 w (-log(y + k) / 2 + R(y + k) + S(k))`` from ``y = 8`` on, below it
    ``-2 w (log G(y + k) - log G(k) - k log(1 + y / k) - y log(1 + k / y))`` with the
    log-gammas' difference from :func:`_shifted_rising_factorial`."""
    big = y >= 8.0
    yb = jnp.where(big, y, 8.0)  # the series only where it converges
    kb = jnp.where(k >= 8.0, k, 8.0)
    s_k = jnp.where(
        k >= 8.0,
        0.5 * jnp.log(kb / (2.0 * jnp.pi)) + 1.0 - _stirling_remainder(kb),
        k * jnp.log(k) - gammaln(k) - (k - 1.0),
    )
    series = -0.5 * jnp.log(yb + k) + _stirling_remainder(yb + k) + s_k
    y1 = jnp.where(y > 0, y, 1.0)
    last = jnp.where(y > 0, y * jnp.log1p(k / y1), 0.0)
    ys = jnp.where(big, 0.0, y)  # the small-count form where it is used
    direct = _shifted_rising_factorial(k, ys) - k * jnp.log1p(ys / k) - last
    return -2.0 * weights * jnp.where(big, series, direct)


def _shifted_rising_factorial(k, y):
    """``log G(y + k) - log G(k)`` for small ``y`` and any ``k > 0``, without log-gammas:
    shifted by 8, ``log G(a) - log G(b)`` (``a = y + k + 8``, ``b = k + 8``) from Stirling's
    series is ``y log a + (b - 1/2) log(1 + y / b) - y + R(a) - R(b)``, less
    ``log prod_{j < 8} (y + k + j) / (k + j)``. Each term is of the size of ``y log k``, so
    it keeps its digits for a size far above the counts (where ``log G(y + k) - log G(k)``
    cancels), and costs three logarithms instead of five log-gammas (two, and
    ``betaln``'s three where ``k >> y``)."""
    a, b = y + k + 8.0, k + 8.0
    ratio = jnp.ones_like(a)
    for j in range(8):
        ratio = ratio * ((y + k + j) / (k + j))
    stirling = y * jnp.log(a) + (b - 0.5) * jnp.log1p(y / b) - y
    return stirling + _stirling_remainder(a) - _stirling_remainder(b) - jnp.log(ratio)


def _nb_data_terms(y, weights, xp, lgamma):
    """The part of :func:`_nb_saturated_density` in the data alone, per row (``xp``:
    numpy or jax.numpy, ``lgamma`` its log-gamma): ``-2 w (-y log(1 + 1 / y)
    - log(y + 1) / 2 - R(y + 1))`` from ``y = 8`` on, ``2 w log y!`` below. Computed once
    per response (:meth:`Family.density_constant`), not in every evaluation."""
    big = y >= 8.0
    yb = xp.where(big, y, 8.0)
    series = -yb * xp.log1p(1.0 / yb) - 0.5 * xp.log(yb + 1.0) - _stirling_remainder(yb + 1.0)
    return -2.0 * weights * xp.where(big, series, -lgamma(y + 1.0))


def _stirling_remainder(x):
    """``R(x) = log G(x) - (x - 1/2) log x + x - log(2 pi) / 2`` for ``x >= 8``: Stirling's
    series ``sum_j B_2j / (2j (2j - 1) x^(2j - 1))`` to ``x^-13`` (the next term is below
    1e-15 at ``x = 8``)."""
    r = 1.0 / x
    r2 = r * r
    c = (1 / 12, 1 / 360, 1 / 1260, 1 / 1680, 1 / 1188, 691 / 360360, 1 / 156)
    acc = c[6]
    for cj in c[5::-1]:
        acc = cj - r2 * acc
    return r * acc
