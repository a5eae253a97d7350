"""The robustness study's sample and harness (scripts/robustness.py, tmepde.behaviours)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tmepde import behaviours as bh
from tmepde.models import tme

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("robustness", ROOT / "scripts" / "robustness.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_latin_hypercube_is_stratified_within_bounds():
    """Every strength lies in [0.7, 1.3] × default (p1_induction and the share p3_cxcr3 capped at
    their maximum 1), and each of the n equal strata of every axis holds exactly one point (the
    Latin property)."""
    n = 16
    names, vals, sets = _script().lhs_sets(n, 0.3, seed=3)
    d = np.array([tme.DEFAULTS[k] for k in names])
    hi = np.where(np.isin(names, ["p1_induction", "p3_cxcr3"]), 1.0, 1.3 * d)
    assert np.all(vals >= 0.7 * d - 1e-12) and np.all(vals <= hi + 1e-12)
    u = (vals - 0.7 * d) / (hi - 0.7 * d)
    for j in range(len(names)):
        counts = np.bincount(np.minimum((u[:, j] * n).astype(int), n - 1), minlength=n)
        assert np.all(counts == 1), names[j]
    assert sets[5] == dict(zip(names, vals[5]))


def test_separation_finds_the_deciding_factor():
    """separation() on a synthetic cohort where response is decided by one factor alone
    (responder iff ln a > 0): a has rank correlation −1 with the best change, the largest
    standardised mean difference and logistic coefficient; the noise factor b stays small."""
    rng = np.random.default_rng(0)
    a, b = np.exp(rng.normal(size=200)), np.exp(rng.normal(size=200))
    best_change = -10 * np.log(a)
    sep = bh.separation({"a": a, "b": b}, np.log(a) > 0, best_change)
    assert sep["a"]["rho"] == -1.0
    assert sep["a"]["smd"] > 2.0 and abs(sep["b"]["smd"]) < 0.4
    assert sep["a"]["logit"] > 3 * abs(sep["b"]["logit"])


@pytest.mark.slow
def test_b5_holds_at_both_ends_of_the_uptake_range():
    """B5 at the ends of the ±30 % uptake range (the 1D harness of tmepde.behaviours): at 0.7 ×
    uptake_ifng the dense-tissue decay length stays ≤ 40 µm (Centofanti 2023), at 1.3 × the
    sparse PD-L1 reach stays ≥ 800 µm (Hoekstra 2020), and at 1.3 × with PD-L1 induction cut
    to 0.7 it does not (the reach is then limited by the PD-L1 ceiling 1/6 + 5/6·0.7 = 0.75,
    whose half-way point needs 1.7× the IFN-γ)."""
    u = tme.DEFAULTS["uptake_ifng"]
    (lo, ok_lo), (hi, ok_hi), (cut, ok_cut) = bh.b5_criteria(
        [{"uptake_ifng": 0.7 * u}, {"uptake_ifng": 1.3 * u}, {"uptake_ifng": 1.3 * u, "p1_induction": 0.7}])
    print("B5 at 0.7x uptake", lo, "1.3x", hi, "1.3x with p1_induction 0.7", cut)
    assert lo["dense λ µm"] <= 40 and ok_lo
    assert hi["sparse reach µm"] >= 800 and ok_hi
    assert cut["sparse reach µm"] < 800 and not ok_cut


def test_space_sample_crosses_every_arm_with_every_point_and_keeps_the_ablations():
    """scripts/robustness_space.py: the sampled sweep has one arm per (scenario arm, point), the
    point's strengths on every arm except where the arm itself sets the key (an ablation: a
    mechanism switched off stays off at every point), and the arms the criteria never read left
    out."""
    spec = importlib.util.spec_from_file_location("robustness_space", ROOT / "scripts" / "robustness_space.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from tmepde.config import load_config
    from tmepde.sweep import plan_sweep

    name = "b2_pulsed_vs_continuous"
    base = load_config(ROOT / "configs" / "scenarios" / f"{name}.toml")
    sets = [{"p3_treg": 0.5, "kill_cd8": 2.0}, {"p3_treg": 0.7, "kill_cd8": 3.0}]
    cfg, arms = mod.sampled_config(base, [{}] + sets, mod.UNUSED_ARMS[name])
    plan = plan_sweep(cfg)
    kept = [a["name"] for a in base.data["sweep"]["arms"] if a["name"] not in mod.UNUSED_ARMS[name]]
    assert arms == kept and len(kept) == 6
    assert plan.n == 3 * len(arms)
    default = float(base.params()["p3_treg"])
    for j, s in enumerate([{}] + sets):
        for arm in arms:
            i = plan.arm_names.index(f"{arm}@{j}")
            treg = plan.values["p3_treg"][plan.arm_index == i]
            kill = plan.values["kill_cd8"][plan.arm_index == i]
            off = "p1_p4_off" in arm
            # rtol: the config's dtype is float32, its defaults reach the plan through it
            np.testing.assert_allclose(treg, 0.0 if off else s.get("p3_treg", default), rtol=1e-6,
                                       err_msg=f"{arm} at point {j}")
            np.testing.assert_allclose(kill, s.get("kill_cd8", float(base.params()["kill_cd8"])), rtol=1e-6,
                                       err_msg=f"{arm} at point {j}")
