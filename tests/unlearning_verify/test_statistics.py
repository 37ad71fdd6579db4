import math

import pytest

from labcore.errors import InputError
from unlearning_verify import statistics as st


def binom_tail(n: int, k: int, p: float) -> float:
    """P[Bin(n, p) ≥ k] summed by hand."""
    return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))


def test_athena_threshold_n30_p06_q01():
    assert st.critical_value(30, 0.1, 1e-3) == 10
    assert binom_tail(30, 10, 0.1) <= 1e-3 < binom_tail(30, 9, 0.1)
    test = st.plan(30, 0.6, 0.1, 1e-3)
    assert test.k_star == 10
    assert test.size == pytest.approx(binom_tail(30, 10, 0.1), rel=1e-9)
    assert test.power == pytest.approx(binom_tail(30, 10, 0.6), rel=1e-9)
    assert test.beta < 1e-3


@pytest.mark.parametrize("p,q,n,k", [(0.9, 0.1, 9, 5), (0.8, 0.1, 15, 7), (0.6, 0.1, 30, 10), (0.5, 0.2, 93, 32),
                                     (0.84, 0.02, 8, 3)])
def test_required_queries_match_reference_table(p, q, n, k):
    assert st.required_queries(p, q, 1e-3, 1e-3) == n
    assert st.critical_value(n, q, 1e-3) == k
    assert st.plan(n - 1, p, q, 1e-3).power < 1 - 1e-3


def test_no_threshold_reaches_level():
    assert st.critical_value(2, 0.5, 1e-3) == 3
    assert st.plan(2, 0.9, 0.5, 1e-3).power == 0.0


def test_chernoff_is_conservative():
    assert st.chernoff_queries(0.8, 0.1, 1e-3) == 20
    assert st.chernoff_queries(0.6, 0.1, 1e-3) >= st.required_queries(0.6, 0.1, 1e-3, 1e-3)


def test_sprt_boundaries_and_steps():
    b = st.sprt_bounds(0.6, 0.1, 1e-3, 1e-3)
    assert b.upper == pytest.approx(math.log(0.999 / 0.001))
    assert b.lower == pytest.approx(math.log(0.001 / 0.999))
    assert b.hit_step == pytest.approx(math.log(6.0))
    assert b.miss_step == pytest.approx(math.log(0.4 / 0.9))
    # log(999)/log(6) = 3.86 → four straight hits cross the upper boundary
    assert st.sprt([True] * 10, b)[:2] == ("kept", 4)
    # log(999)/log(9/4) = 8.52 → nine straight misses cross the lower boundary
    assert st.sprt([False] * 20, b)[:2] == ("deleted", 9)
    assert st.sprt([True, False] * 2, b)[0] == "undecided"


def test_clopper_pearson_closed_forms():
    # zero successes: upper = 1 − (1 − c)^(1/n); all successes: lower = (1 − c)^(1/n)
    assert st.clopper_pearson_upper(0, 50, 0.999) == pytest.approx(1 - 0.001 ** (1 / 50))
    assert st.clopper_pearson_lower(50, 50, 0.999) == pytest.approx(0.001 ** (1 / 50))
    assert st.clopper_pearson_lower(0, 50, 0.999) == 0.0
    assert st.clopper_pearson_upper(50, 50, 0.999) == 1.0


def test_p_value_is_binomial_tail():
    assert st.p_value(7, 20, 0.1) == pytest.approx(binom_tail(20, 7, 0.1))


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_probability_outside_unit_interval(bad):
    with pytest.raises(InputError):
        st.check_probability("alpha", bad)
