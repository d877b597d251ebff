"""Issue 11 probe 2: the estimator's standardisation at huge and tiny scales.

``R().fit(X * 1e300, y)``, ``R().fit(X, y * 1e200)`` and ``R().fit(X, y * 1e-17)`` must
give the model of the unscaled data (to rounding), or be refused by name; a column is
constant only when it is exactly constant.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from sepneuron.scaling import standardize, standardizer

pytestmark = pytest.mark.usefixtures("one_thread")


# Adam, as these tests were written: LM's exact solves amplify the last-bit differences
# of the standardised data beyond the 1e-9 asserted here.
ADAM_FIT = dict(optimizer="adam", output_layer="optimizer", init="default", kind="softplus")


@pytest.fixture(scope="module")
def data():
    from sepneuron import SeparatedMLPRegressor as R

    rng = np.random.default_rng(0)
    X = rng.random((80, 2))
    y = np.sin(3 * X[:, 0]) + X[:, 1]
    base = R(hidden_layer_sizes=(8,), max_steps=60, random_state=0, **ADAM_FIT).fit(X, y)
    return X, y, base.predict(X)


@pytest.mark.parametrize("x_factor, y_factor", [
    (1e300, 1.0), (1e-300, 1.0), (1.0, 1e200), (1.0, 1e-17), (1.0, 1e-300), (1e300, 1e-300),
])
def test_scaled_data_give_the_unscaled_model(data, x_factor, y_factor):
    from sepneuron import SeparatedMLPRegressor as R

    X, y, want = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow / underflow RuntimeWarning either
        reg = R(hidden_layer_sizes=(8,), max_steps=60, random_state=0,
                **ADAM_FIT).fit(X * x_factor, y * y_factor)
        got = reg.predict(X * x_factor) / y_factor
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9 * np.std(y))


def test_a_column_is_constant_only_when_it_is():
    a = np.array([[1.0, 5.0, 0.0], [1.0 + 2.2e-16, 5.0, 0.0], [1.0, 5.0, 0.0]])
    mean, scale = standardizer(a)
    assert scale[0] != 1.0 and scale[0] < 1e-15  # a spread of one ulp is a spread
    assert scale[1] == 1.0 and scale[2] == 1.0   # exactly constant columns
    z = standardize(a, mean, scale)
    # at one ulp the mean and scale round too, so only the order and size are exact
    assert z[1, 0] - z[0, 0] > 1.5 and z[0, 0] == z[2, 0] and np.abs(z).max() < 3
    assert (z[:, 1:] == 0).all()


@pytest.mark.parametrize("column, match", [
    ([1.7e308, -1.7e308, 1.7e308], "too large to standardise"),
    ([1e-310, 2e-310, 1e-310], "cannot be represented"),
])
def test_unrepresentable_scales_are_refused_naming_the_column(column, match):
    from sepneuron import SeparatedMLPRegressor as R

    X = np.column_stack([np.arange(3.0), column])
    with pytest.raises(ValueError, match=f"X column 1: .*{match}"):
        R(max_steps=2).fit(X, np.arange(3.0))
    with pytest.raises(ValueError, match=f"y column 0: .*{match}"):
        R(max_steps=2).fit(X[:, :1], np.array(column))
