"""CT26 fitting on the radial grid.

* Synthetic volumes made with known growth parameters plus noise, fitted per animal by
  tmepde.ct26.fit_cohort (the cohort fitter of `tmepde fit`), recover the parameters within
  their 2σ Gauss–Newton intervals.
* The shipped data set loads with its documented arms.
"""

import jax.numpy as jnp
import numpy as np

from tmepde import ct26


def test_data_ships_three_arms_of_eight_mice():
    arms = ct26.load_data()
    assert set(arms) == set(ct26.ARMS)
    for arm in arms.values():
        assert len(arm.mice) == 8 and arm.days[0] == 11
    # 215 rows in the csv (header excluded)
    assert sum(int(np.isfinite(a.volumes).sum()) for a in arms.values()) == 215


def test_synthetic_volumes_recover_growth_parameters_within_2_sigma():
    # IMEX Euler: a third of the compiled program of sbdf2 (the scheme is not what is tested here)
    problem = ct26.Ct26Problem(n_shells=16, radius_um=12000.0, dt=2.0, n_days=12, dtype=jnp.float64,
                               scheme="sbdf1")
    truth = {"growth_tumor": 0.03, "D_tumor": 0.5, "v0_mm3": 15.0}
    p_true = problem.base_params(**truth)
    clean = np.asarray(problem.volumes(p_true))
    assert clean[-1] > 3 * clean[0]  # the tumor grows over the 12 days
    rng = np.random.default_rng(7)
    noise = 0.05
    days = ct26.DAY0 + np.arange(len(clean))
    vols = np.stack([(clean + ct26.FLOOR_MM3) * np.exp(noise * rng.standard_normal(clean.shape)) - ct26.FLOOR_MM3
                     for _ in range(2)])
    arm = ct26.Arm("synthetic", np.array([1, 2]), days, vols)
    start = problem.base_params(growth_tumor=0.02, D_tumor=0.5, v0_mm3=12.0)
    res = ct26.fit_cohort(problem, arm, start, ["growth_tumor", "v0_mm3"], prior_sd=3.0,
                          sigma=noise, max_steps=12)
    for name in ("growth_tumor", "v0_mm3"):
        est, se = res.values[name], res.std_error[name]
        err = np.abs(est - truth[name])
        assert np.all(err < 2 * se), (name, est, se)
        assert np.all(se < 0.25 * truth[name]), (name, se)
    assert np.all(res.cost < 3 * len(clean)), res.cost  # χ² ~ n/2 with the right noise


