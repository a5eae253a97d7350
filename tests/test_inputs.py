"""Time-only model inputs (``Model(inputs=...)``): tabulated by the time loop, exact against
the closed-form response, equal to evaluating them in every step, values and gradients."""

import numpy as np
import jax
import jax.numpy as jnp
import pytest

import tmepde as tp
from tmepde import therapy
from tmepde.model import INPUT_PREFIX, input_value

WIDTH = 1.0  # h, s.d. of each smoothed bolus
K = 0.3      # 1/h, linear decay (implicit)


def dose_rate(t, p):
    """ng/h of the smoothed boluses at ``p["times"]`` of ``p["amounts"]``."""
    return therapy.pulse_rate(t, p["times"], p["amounts"], WIDTH)


def make_model(seen: list):
    """``u' = r(t) - K u``: the i.v. one-compartment response to the boluses, exactly
    ``therapy.pk_concentration`` with ``ke = K`` and unit volume. ``seen`` records, each time
    the reactions are traced, whether the loop handed them the tabulated value."""
    def reactions(t, y, p):
        seen.append(INPUT_PREFIX + "dose_rate" in p)
        return {"u": input_value("dose_rate", dose_rate, t, p)}

    params = {"times": np.array([2.0, 7.5, 13.0]), "amounts": np.array([3.0, 1.0, 2.0])}
    return tp.Model([tp.Species("u", decay=K)], reactions, params, inputs={"dose_rate": dose_rate})


def exact(t, p):
    return therapy.pk_concentration(t, p["times"], p["amounts"], ke=K, volume_ml=1.0, width=WIDTH)


def final(model, scheme, dt, t_end=24.0):
    sim = tp.Simulator(model, tp.Grid((2,), 10.0), dt=dt, save_every=t_end, scheme=scheme,
                       dtype=jnp.float64)
    y0 = jnp.zeros((1, 2))
    return lambda p: sim.run(p, y0, 1)[-1, 0, 0]


def test_tabulated_input_converges_at_the_schemes_order_to_the_exact_response():
    seen = []
    model = make_model(seen)
    p = model.default_params(jnp.float64)
    ref = float(exact(24.0, p))
    errors = [abs(float(jax.jit(final(model, "sbdf2", dt))(p)) - ref) for dt in (0.25, 0.125, 0.0625)]
    orders = np.log2(np.asarray(errors[:-1]) / np.asarray(errors[1:]))
    print("sbdf2 errors", errors, "orders", orders)
    assert ref > 0.1
    assert np.all(orders > 1.8)
    assert True in seen  # the loop's steps read the table (the graded start evaluates rows too)


@pytest.mark.parametrize("scheme", ["sbdf2", "sbdf1"])
def test_tabulated_input_equals_evaluating_it_in_every_step(scheme):
    """Same run with the model's inputs withdrawn (every step evaluates ``dose_rate`` itself):
    the same value and gradient w.r.t. the dose times and amounts, to round-off."""
    seen = []
    tabulated = make_model(seen)
    direct = make_model([])
    direct.inputs = {}
    p = tabulated.default_params(jnp.float64)
    v1, g1 = jax.jit(jax.value_and_grad(final(tabulated, scheme, 0.5)))(p)
    v0, g0 = jax.jit(jax.value_and_grad(final(direct, scheme, 0.5)))(p)
    assert True in seen
    assert float(v1) == pytest.approx(float(v0), rel=1e-13)
    for key in ("times", "amounts"):
        np.testing.assert_allclose(np.asarray(g1[key]), np.asarray(g0[key]), rtol=1e-11, atol=1e-14)
    assert np.all(np.abs(np.asarray(g1["times"])) > 1e-6)  # the dose times act on the result


def test_multistage_schemes_evaluate_inputs_as_written():
    """An exponential integrator evaluates its reactions at stage times inside the step, which a
    per-step table cannot give: it never sees one, and still converges to the exact response."""
    seen = []
    model = make_model(seen)
    p = model.default_params(jnp.float64)
    got = float(jax.jit(final(model, "etdrk2", 0.0625))(p))
    assert seen and not any(seen)
    assert got == pytest.approx(float(exact(24.0, p)), rel=1e-3)
