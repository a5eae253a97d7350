"""Dose amounts written with units in configs ("50 ug/m2", "200 mg", "2 mg/kg") resolve to the
ng the model takes, for the [patient]'s body-surface area and weight (label arithmetic)."""

import numpy as np
import pytest

from tmepde.config import ConfigError, loads_config

BASE = """
[grid]
shape = [4, 4]
spacing = 20.0
[time]
t_end = 600.0
dt = 0.5
save_every = 12.0
[model]
path = "tmepde.models.tme:tme_model"
[model.options]
n_doses = 3
[model.params]
sys_ifng_times = [0.0, 56.0, 112.0]
sys_pd1_times = [0.0, 504.0, 0.0]
"""


def _params(extra="", patient=""):
    cfg = loads_config(BASE + extra + patient)
    return cfg.data["model"]["params"]


def test_amounts_per_m2_per_kg_and_flat_are_ng_for_the_patient():
    p = _params('sys_ifng_amounts = ["50 ug/m2", "50 µg/m²", 8.65e4]\n'
                'sys_pd1_amounts = ["200 mg", "2 mg/kg", 0.0]\n')
    # reference adult 1.73 m², 70 kg: 50 µg/m² = 86.5 µg; 2 mg/kg = 140 mg
    np.testing.assert_allclose(p["sys_ifng_amounts"], [8.65e4, 8.65e4, 8.65e4], rtol=1e-12)
    np.testing.assert_allclose(p["sys_pd1_amounts"], [2.0e8, 1.4e8, 0.0], rtol=1e-12)
    q = _params('sys_ifng_amounts = ["50 ug/m2", 0, 0]\nsys_pd1_amounts = ["2 mg/kg", 0, 0]\n',
                "[patient]\nbsa_m2 = 2.0\nweight_kg = 80.0\n")
    assert q["sys_ifng_amounts"][0] == pytest.approx(1.0e5, rel=1e-12)
    assert q["sys_pd1_amounts"][0] == pytest.approx(1.6e8, rel=1e-12)
    # a flat dose does not depend on the patient
    r = _params('sys_pd1_amounts = ["200 mg", 0, 0]\n', "[patient]\nweight_kg = 50.0\n")
    assert r["sys_pd1_amounts"][0] == pytest.approx(2.0e8, rel=1e-12)


@pytest.mark.parametrize("value,needle", [
    ('["50 ug/m3", 0, 0]', "model.params.sys_ifng_amounts[0]: unknown dose unit 'ug/m3'"),
    ('[0, "fifty ug", 0]', "model.params.sys_ifng_amounts[1]: 'fifty ug' is not an amount"),
    ('[0, 0, "-5 mg"]', "model.params.sys_ifng_amounts"),  # negative amounts: the sign rule
])
def test_bad_dose_strings_name_the_key_and_slot(value, needle):
    with pytest.raises(ConfigError) as e:
        _params(f"sys_ifng_amounts = {value}\n")
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_patient_values_are_checked():
    with pytest.raises(ConfigError, match="patient.bsa_m2"):
        _params("", "[patient]\nbsa_m2 = -1.0\n")
    with pytest.raises(ConfigError, match="patient.height"):
        _params("", "[patient]\nheight = 180.0\n")
