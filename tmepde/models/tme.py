"""The IFN-γ tumor-microenvironment model (built only on the public model API).

Mechanisms A1–A8 (anti-tumor) and P1–P7 (pro-tumor) of the model brief (docs/model.md) are separate,
switchable terms: each has its own strength parameter (0 switches it off). All switches are
smooth (Hill functions, no branches), so every output is differentiable in every parameter,
including dose times. Equations, units and sources: ``docs/model.md``.

Units: length µm, time h, D and χ in µm²/s, cytokines and drugs ng/mL, cells as volume
fraction (0..1, crowding capacity 1), PD-L1 level and exposure memory 0..1, vessel density
0..1 (relative perfused-vessel density of a voxel).

Usage::

    model = tme_model()                       # well-mixed intratumoral dosing
    model = tme_model(grid=grid)              # Gaussian injection sites on this grid
    p = model.params()                        # defaults (see DEFAULTS)
    y0 = model.stack(initial_conditions(grid), grid)
"""

from __future__ import annotations

import math

import numpy as np
import jax.numpy as jnp

from .. import therapy
from ..model import Chemotaxis, Model, Observable, Species, input_value

H = 3600.0  # s per h
CELLS = ("tumor", "stem", "cd8", "cd8_ex", "nk", "treg", "mdsc", "m1", "m2")
CYTOKINES = ("ifng", "il2", "il12", "tgfb", "il10", "cxcl")
SYSTEMIC = {  # agent -> tissue field it enters
    "ifng": "ifng", "pd1": "apd1", "pdl1i": "pdl1i", "tgfbi": "tgfbi"}
LOCAL = {"ifng": "depot_ifng", "il12": "depot_il12"}  # intratumoral / sustained release
# PK of each systemic agent: the label fits of the agent library (tmepde.therapy), e.g.
# IFN-γ-1b s.c. Cmax 0.60 ng/mL at 7.2 h per 100 µg/m² (Actimmune label, section 12.3).
PK = {"ifng": therapy.IFNG_1B_SC, "pd1": therapy.PEMBROLIZUMAB_IV,
      "pdl1i": therapy.PDL1_BLOCKER_ORAL, "tgfbi": therapy.TGFB_BLOCKADE_IV}

# Diffusivities (µm²/s) and linear decays (1/h). "est" = our estimate.
TRANSPORT = {
    #         D        decay          source
    "tumor":  (0.005, 0.0),           # est: front speed 2√(Dr) ≈ 20 µm/day
    "stem":   (0.005, 0.0),           # est
    "cd8":    (0.5, 0.0),             # T-cell random motility 3–60 µm²/min = 0.05–1 µm²/s
    "cd8_ex": (0.1, 0.0),             # est (exhausted: slower)
    "nk":     (0.5, 0.0),             # as CD8 (est)
    "treg":   (0.3, 0.0),             # est
    "mdsc":   (0.3, 0.0),             # est
    "m1":     (0.05, 0.0),            # est (macrophages slow)
    "m2":     (0.05, 0.0),            # est
    "ifng":   (16.5, 0.154),          # D in tumor tissue: Popel-lab fit to Ramanujan 2002
                                      # (12.6–16.5; free solution 100, spQSP-IO); cell-free
                                      # decay t½ 4.5 h, the long end of the measured 2–4.5 h
                                      # (spQSP-IO 6.5e-5 /s = 3 h): a measured clearance
                                      # already contains receptor uptake, added here as its
                                      # own term (B5)
    "il2":    (100.0, 0.693),         # spQSP-IO D; t½ 1 h (range 0.1–7 h)
    "il12":   (50.0, 0.023),          # D est (70 kDa); decay QSPIO-TNBC 0.023 /h
    "tgfb":   (27.0, 0.596),          # Popel fit D; 14.3 /day QSPIO-TNBC
    "il10":   (50.0, 0.167),          # D est; 4 /day QSPIO-TNBC
    "cxcl":   (100.0, 0.46),          # est (8–10 kDa chemokine, t½ 1.5 h)
    "pdl1":   (0.0, 1.0 / 24),        # relaxation ≈ 1 /day QSPIO-TNBC
    "memory": (0.0, 1.0 / 72),        # est: running average, time constant 3 days
    "vessel": (0.0, 0.0),
    "apd1":   (10.0, 0.0),            # IgG in tissue ~10 µm²/s (est)
    "pdl1i":  (300.0, 0.1),           # small molecule (est)
    "tgfbi":  (10.0, 0.0),            # antibody / trap (est)
    "depot_ifng": (0.0, 1.0),         # first-order release from the injection depot (est)
    "depot_il12": (0.0, 0.5),         # est (IL-12 vector / depot release)
}

# Reaction parameters (units in brackets). "est" marks our estimates.
DEFAULTS = {
    # -- tumor ------------------------------------------------------------------------
    "growth_tumor": 0.3 / 24,      # 1/h; 0.11–0.51 /day (Benzekry, Kuznetsov, de Pillis)
    "growth_stem": 0.15 / 24,      # 1/h; est (stem-like cycle slower)
    "capacity": 1.0,               # volume fraction; packed tissue
    "supply_weight": 0.3,          # -, share of growth that needs perfusion (A8 coupling), est
    "kill_sat": 0.2,               # volume fraction; tumor density at half-max killing, est
    "stem_resistance": 0.3,        # -, killing efficacy on stem-like cells relative, est
    # A1 antiproliferative + apoptosis (high EC50)
    "a1_antiprolif": 0.5,          # -, max fractional growth inhibition, est
    "ec50_a1": 5.0,                # ng/mL, est (JAK/STAT, high EC50)
    "a1_apoptosis": 0.03,          # 1/h max apoptosis rate, est
    "ec50_apoptosis": 20.0,        # ng/mL, est
    "hill_apoptosis": 2.0,
    # A2 MHC-I upregulation boosts CTL per-contact efficacy
    "a2_mhc": 3.0,                 # -, max fold increase minus 1 (MHC-I up to 4-fold), est
    "ec50_a2": 0.3,                # ng/mL, est: MHC-I is, like PD-L1, an IRF1 target and
                                   # responds at sub-ng/mL; pinned by the clinical scenario
                                   # (IFN-γ-1b + anti-PD-1 beats anti-PD-1 alone)
    # CTL / NK / M1 killing
    "kill_cd8": 4.0 / 24,          # 1/h per CTL volume fraction; 2–16 kills/CTL/day
    "kill_nk": 2.0 / 24,           # 1/h, est
    "kill_m1": 1.0 / 96,           # 1/h, est; pinned by B6 (high-dose killing rests on A1
                                   # apoptosis): with rec_mac 3e-3, 1/24 leaves B6 at 0.30
                                   # of the ±30 % sample, 1/96 at 0.97
    # A3 chemokine induction and recruitment from vessels
    "a3_cxcl": 20.0,               # ng/mL/h per cell volume fraction, est
    "cxcl_basal": 0.1,             # -, basal fraction of max secretion, est
    "ec50_a3": 0.5,                # ng/mL IFN-γ, est
    "a3_endothelial": 2.0,         # ng/mL CXCL9/10 on IFN-γ-activated endothelium, est
    "a3_adhesion": 0.15,           # -, fold increase minus 1 of effector extravasation by
                                   # IFN-γ-induced endothelial ICAM-1/VCAM-1 (Dustin 1986;
                                   # Lugade 2008), est; ≤ 0.25 keeps B2 in space with A1 off
                                   # (an acute low-EC50 action favours continuous exposure),
                                   # ≤ 0.15 keeps B2, B6, B8 at ≥ 0.8 of the ±30 % sample
    "ec50_endothelium": 0.1,       # ng/mL at the vessel wall: endothelial ICAM-1/MHC responses
                                   # at 1–100 U/mL (Pober 1986) = 0.05–5 ng/mL at 2e7 U/mg;
                                   # low end, as the IRF1 target PD-L1 (0.1 ng/mL), est
    "uptake_cxcl": 5.0,            # 1/h per effector volume fraction, est
    "ec50_cxcl": 1.0,              # ng/mL CXCL9/10 for half-max recruitment, est
    "rec_cd8": 2e-3,               # volume fraction/h per unit vessel density, est
    "rec_nk": 1e-3,                # est
    "rec_basal": 0.2,              # -, recruitment without chemokine relative to max, est
    # A4 M2 -> M1 polarisation; M1 -> M2 reversion
    "a4_polarize": 0.05,           # 1/h, est
    "ec50_a4": 1.0,                # ng/mL, est
    "m1_to_m2": 0.01,              # 1/h basal, est
    "rec_mac": 3e-3,               # volume fraction/h per vessel density, est; pinned by the
                                   # infiltrate: macrophages are the largest leukocyte
                                   # population of most solid tumors (CIBERSORT over TCGA,
                                   # Thorsson 2018); 3e-3 keeps the section's initial 0.02
                                   # macrophages (0.029 in the tumor at day 30, 36 % of its
                                   # immune cells; 5e-4 let them fall to 0.005, 9 %)
    "a4_systemic": 1.0,            # -, share of recruited monocytes that arrive M1 at
                                   # saturating plasma IFN-γ (blood monocytes activated by
                                   # s.c. IFN-γ-1b: HLA-DR, Döcke 1997), est
    "ec50_monocyte": 0.05,         # ng/mL plasma IFN-γ: monocyte HLA-DR / CD64 from 1 U/mL,
                                   # est
    "death_mac": 0.01,             # 1/h, est
    # A5 NK boost
    "a5_nk": 1.0,                  # -, est
    "ec50_a5": 1.0,                # ng/mL, est
    # A6 IL-12 <-> IFN-γ loop
    "secr_ifng": 273.6,            # ng/mL/h per engaged effector volume fraction: 7.6e-10
                                   # ng/s/cell (spQSP-IO) × 1e9 cells/mL (cell volume
                                   # 1000 µm³) × 10 % actively secreting at a time (est)
    "a6_il12_to_ifng": 2.0,        # -, max fold increase minus 1, est
    "ec50_il12": 1.0,              # ng/mL, est
    "secr_il12": 2.0,              # ng/mL/h per M1 volume fraction, est
    "a6_ifng_to_il12": 2.0,        # -, est
    "ec50_a6": 1.0,                # ng/mL IFN-γ, est
    "uptake_il12": 1.0,            # 1/h per effector volume fraction, est
    # IFN-γ consumption: receptor-mediated (IFNGR1 binding, internalisation), saturable,
    # by every cell present: rate = uptake_ifng·φ·I/(1 + I/km_ifng) (ng/mL/h), φ = Σ cells.
    "uptake_ifng": 58.0,           # 1/h per cell volume fraction at I << km_ifng (= Vmax/Km);
                                   # dense-tissue decay length √(D/k) = 32 µm, ≤ 40 µm
                                   # (Centofanti 2023: 30–40 µm) down to −30 % uptake; = n·R·k_e/Kd
                                   # for 1e9 cells/mL with R ≈ 600 free IFNGR1 per cell
                                   # (200–25,000; Farrar & Schreiber 1993), Kd 0.1 nM and
                                   # internalisation k_e ≈ 0.1 /min (est); spQSP-IO 3.6 /h per voxel
    "km_ifng": 3.3,                # ng/mL: IFNGR1 Kd ≈ 0.1 nM (1e-10–1e-9 M; Bach 1997)
                                   # × 33 kDa (IFN-γ-1b dimer, 2 × 16.5 kDa, Actimmune label)
    # A7 IL-2
    "secr_il2": 50.0,              # ng/mL/h per CD8 volume fraction (antigen-engaged), est
    "a7_prolif_cd8": 0.03,         # 1/h max, est (doubling ~1 day)
    "a7_prolif_nk": 0.02,          # 1/h max, est
    "ec50_il2": 4.96,              # ng/mL = 0.32 nM × 15.5 kDa (QSPIO-TNBC)
    "ec50_il2_treg": 0.5,          # ng/mL, CD25-high (10x lower), est
    "uptake_il2": 10.0,            # 1/h per effector volume fraction, est
    "uptake_il2_treg": 50.0,       # 1/h per Treg volume fraction (CD25 sink), est
    "death_cd8": 0.01,             # 1/h, est
    "death_nk": 0.01,              # 1/h, est
    # A8 angiogenesis and its inhibition by IFN-γ (optional)
    "angiogenesis": 0.002,         # 1/h per tumor volume fraction, est
    "a8_antiangio": 0.005,         # 1/h max vessel regression, est
    "ec50_a8": 1.0,                # ng/mL, est
    # P1 PD-L1 induction and checkpoint
    "p1_induction": 1.0,           # -, induced share of the max (0 = off)
    "p1_on_rate": 0.1,             # 1/h at saturating IFN-γ: half-way up in ~5 h (with the
                                   # 1/day relaxation), est; faster rates make PD-L1 hold
                                   # each pulse's peak for a day (pinned by B2 in space)
    "ec50_pdl1": 0.1,              # ng/mL (spQSP-IO; Shin 2017)
    "hill_pdl1": 1.26,
    "pdl1_basal": 1.0 / 6,         # -, basal / max (up to 6-fold)
    "p1_kill_inhibition": 3.0,     # -, PD-1:PD-L1 inhibition strength of killing, est
    "p1_secretion_inhibition": 2.0,  # -, of IFN-γ / IL-2 secretion, est
    "p1_chronic_nk": 3.0,          # -, PD-1:PD-L1 inhibition strength of NK killing at full
                                   # chronic signalling (NK cells express PD-1, Hsu 2018), est:
                                   # as that of CTL killing (p1_kill_inhibition); pinned by B2
                                   # in space with A1 apoptosis off (96² section: 0 gives
                                   # 1.019, 2 gives 1.119 >= 1.10)
    "ec50_apd1": 500.0,            # ng/mL anti-PD-1 for half receptor occupancy, est
    # P2 exhaustion
    "p2_exhaustion": 0.1 / 24,     # 1/h; 0.05–0.1 /day (QSPIO; SPQSP_PDAC)
    "p2_pd_independent": 0.4,      # -, PD-1-independent exhaustion, in units of the PD-1
                                   # signal pd (≈ 0.4 untreated: full blockade halves the
                                   # exhaustion rate instead of abolishing it), est
    "p2_chronic": 6.0,             # -, weight of chronic signalling; it acts through PD-1
                                   # (× pd ≈ 0.5 under IFN-γ), so 0.3 /day at full gate
                                   # without blockade, est; pinned by B2 (A1 apoptosis off)
    "death_cd8_ex": 0.005,         # 1/h, est
    # chronic-exposure memory and the threshold of chronic signalling
    "ec50_memory": 0.2,            # ng/mL, est: the memory averages h(I; 0.2, 4), so
                                   # 0.2 ng/mL held for days fills it to 0.5, endogenous
                                   # 0.05-0.13 ng/mL to < 0.15
    "hill_memory": 4.0,            # -, est
    "chronic_threshold": 0.45,     # -, memory level of half-max chronic signalling, est:
                                   # pulses every 2 days keep the memory below it, sustained
                                   # exposure crosses it (pinned by B2 in space)
    "hill_chronic": 4.0,           # -, est (switch-like: chronic vs acute exposure)
    # P3 chronic IFN-γ recruits Tregs; IFN-γ lowers NSDHL -> tumor TGF-β1
    "rec_treg": 3e-4,              # volume fraction/h per vessel density, est
    "p3_treg": 2.5,                # -, fold increase at full chronic signalling, est; pinned by
                                   # B2 (Tregs ≥ 1.1x: 2 holds it at 0.69 of the ±30 % sample
                                   # once P1 inhibits NK cells, 2.5 at 0.86) and the clinical
                                   # combination (at 3 anti-PD-1's own IFN-γ recruits enough
                                   # Tregs that adding IFN-γ-1b loses to anti-PD-1 alone, 64²:
                                   # 0.103 vs 0.101 of untreated; 2.5: 0.085 vs 0.088)
    "p3_cxcr3": 1.0,               # -, share of Treg recruitment gated as that of effectors
                                   # (CXCL9/10 at the vessel wall, A3, and the endothelial
                                   # adhesion step): IFN-γ induces T-bet and CXCR3 on Tregs,
                                   # which then follow effectors into type-1 inflamed sites
                                   # (Koch 2009), and CXCR3 is needed for Treg accumulation in
                                   # tumors (Redjimi 2012; Moreno Ayala 2023), est; 0 leaves Treg
                                   # recruitment blind to IFN-γ below the chronic threshold, and
                                   # Tregs do not rise under IFN-γ-1b alone (clinical scenario)
    "secr_tgfb": 1.0,              # ng/mL/h per tumor volume fraction, est
    "p3_tgfb": 3.0,                # -, fold increase by IFN-γ (NSDHL), est
    "ec50_p3": 0.15,               # ng/mL, est: sub-ng/mL like the IRF1 targets; pinned by
                                   # B8 (0.5: 0.80 of the ±30 % sample, 0.15: 0.84)
    "secr_tgfb_reg": 2.0,          # ng/mL/h per Treg/M2 volume fraction, est
    "a7_prolif_treg": 0.02,        # 1/h max, est
    "death_treg": 0.01,            # 1/h, est
    # P4 MDSC
    "rec_mdsc": 3e-4,              # volume fraction/h per vessel density, est
    "p4_mdsc": 3.0,                # -, fold increase at a full exposure memory (NLRP3/WNT5a/
                                   # CXCR2, an adaptive resistance that builds over days of
                                   # IFN-γ/PD-L1 signalling, Theivanthiran 2020), est
    "death_mdsc": 0.01,            # 1/h, est
    "mdsc_suppression": 20.0,      # -, per MDSC volume fraction, est
    "treg_suppression": 20.0,      # -, per Treg volume fraction, est
    # P5 IDO-1 (co-induced with PD-L1)
    "p5_ido": 1.0,                 # -, est
    # P6 stemness (low dose, chronic) vs apoptosis (high dose: A1)
    "p6_stemness": 0.003,           # 1/h max conversion, est
    "stem_reversion": 0.005,       # 1/h, est
    "ec50_stem": 1.0,              # ng/mL, lower edge of the stemness window, est
    # P7 TGF-β and IL-10 suppression
    "p7_tgfb_ctl": 2.0,            # -, est
    "ec50_tgfb": 3.5,              # ng/mL = 0.14 nM × 25 kDa (QSPIO-TNBC)
    "p7_tgfb_treg": 1.0,           # -, est
    "p7_il10": 2.0,                # -, est
    "ec50_il10": 0.15,             # ng/mL ≈ 8 pM × 18.6 kDa (QSPIO-TNBC)
    "secr_il10": 1.0,              # ng/mL/h per M2/Treg/MDSC volume fraction, est
    # drugs in tissue
    "ec50_pdl1i": 10.0,            # ng/mL, est
    "ec50_tgfbi": 1000.0,          # ng/mL trap for 50 % TGF-β neutralisation, est
    "it_volume_ml": 0.1,           # mL, tumor volume for well-mixed intratumoral dosing
}


# IFN-γ exchange through vessels (1/h per unit vessel density), est. Source and sink are one
# term, perm·V·(partition·C_plasma − I): the local tissue : plasma ratio is
# partition·perm·V/(perm·V + decay + uptake·φ), partition_ifng = 0.5 (interstitial : plasma
# ratio of plasma proteins, Wiig & Swartz 2012): 0.5 in perfused stroma, ≈ 0.05 in a dense
# tumor voxel at V = 0.15. The same exchange washes intratumoral doses out; at ≥ 100 /h it
# does so within minutes and acute intratumoral courses lose their effect (B1, B6).
PERM_IFNG = 20.0


def hill(x, k, n=1.0):
    """x^n/(k^n + x^n) for x >= 0, smooth in x, k and n (no NaN gradients at x = 0)."""
    positive = x > 0
    safe = jnp.where(positive, x, 1.0)  # double where: exact 0 at x = 0, finite gradients
    r = jnp.where(positive, jnp.exp(n * (jnp.log(safe) - jnp.log(k))), 0.0)
    return r / (1.0 + r)


def _n_slots(n_doses, agent, route, default=4):
    if isinstance(n_doses, int):
        return n_doses
    prefix = (therapy.systemic_prefix if route == therapy.SYSTEMIC else therapy.local_prefix)(agent)
    return int((n_doses or {}).get(prefix, default))


def plasma(agent, t, p):
    """Plasma concentration (ng/mL) of systemic ``agent`` at time(s) ``t`` (h) for parameters
    ``p``: :func:`tmepde.therapy.plasma_concentration` of the dosing in ``p``."""
    return therapy.plasma_concentration(t, therapy.systemic(p, agent), p["dose_width_h"])


def _plasma_input(agent):
    """``plasma(agent, ·, ·)`` as a model input ``fn(t, p)`` (a closure, so the program store
    fingerprints the agent with it)."""
    def plasma_of(t, p):
        return plasma(agent, t, p)
    return plasma_of


def _depot_rate_input(agent):
    """The amount per hour (ng/h) the doses of intratumoral ``agent`` put into its depot,
    as a model input ``fn(t, p)`` (:func:`tmepde.therapy.local_rate`)."""
    def depot_rate(t, p):
        return therapy.local_rate(t, therapy.local(p, agent), p["dose_width_h"])
    return depot_rate


#: The model's time-only inputs: the plasma level of every systemic agent and the dose rate
#: into every intratumoral depot (tabulated by the time loop; :func:`tmepde.model.input_value`).
INPUTS = ({f"plasma_{agent}": _plasma_input(agent) for agent in SYSTEMIC}
          | {f"depot_rate_{agent}": _depot_rate_input(agent) for agent in LOCAL})


def _plasma_now(agent, t, p):
    """Plasma level of ``agent`` where the reactions need it (tabulated by the time loop)."""
    name = f"plasma_{agent}"
    return input_value(name, INPUTS[name], t, p)


def tme_model(grid=None, n_doses=4, boundaries=None, cd8_chi: float = 2.0, nk_chi: float = 2.0,
              name: str = "tme") -> Model:
    """Build the TME model.

    grid: optional :class:`tmepde.Grid`; with it, intratumoral doses are deposited as 3D
        Gaussians at ``it_<agent>_x/_y/_z`` (µm) of s.d. ``it_<agent>_width`` (µm); without,
        evenly in ``it_volume_ml`` (well mixed).
    n_doses: slots per schedule (static), an int or a dict ``{"sys_ifng": 6, "it_il12": 3}``.
    boundaries: ``{species: boundary spec}`` (default zero flux everywhere).
    cd8_chi, nk_chi: chemotactic sensitivity up CXCL9/10 (µm²/s per ng/mL), est.
    """
    boundaries = dict(boundaries or {})
    crowd = CELLS
    species = []
    for s, (D, k) in TRANSPORT.items():
        taxis = None
        if s in ("cd8", "nk"):
            taxis = Chemotaxis("cxcl", sensitivity=cd8_chi if s == "cd8" else nk_chi,
                               capacity=1.0, crowding=crowd)
        units = ("volume fraction" if s in CELLS else "ng/mL" if s not in
                 ("pdl1", "memory", "vessel") else "1")
        species.append(Species(s, diffusivity=D, decay=k, boundary=boundaries.get(s, "neumann"),
                               chemotaxis=taxis, units=units))

    params = dict(DEFAULTS)
    for agent, pk in PK.items():
        n = _n_slots(n_doses, agent, therapy.SYSTEMIC)
        params.update(therapy.systemic_params(agent, therapy.SystemicDosing(therapy.Schedule.empty(n), pk)))
        # exchange through vessels (1/h per unit vessel density) and tissue:plasma ratio
        params[f"perm_{agent}"] = {"ifng": PERM_IFNG, "pd1": 0.05, "pdl1i": 1.0, "tgfbi": 0.05}[agent]
        params[f"partition_{agent}"] = {"ifng": 0.5, "pd1": 0.3, "pdl1i": 1.0, "tgfbi": 0.3}[agent]
    for agent in LOCAL:
        n = _n_slots(n_doses, agent, therapy.LOCAL)
        # sustained local release (inf_<agent>_rate, ng/h into the depot) off by default; on a
        # grid the injection site is the domain's centre, bleb s.d. 200 µm (est)
        site = None if grid is None else therapy.Deposit(tuple(0.5 * e for e in grid.extent), 200.0)
        params.update(therapy.local_params(agent, therapy.LocalDosing(
            therapy.Schedule.empty(n), therapy.Infusion(), site)))
    params["dose_width_h"] = therapy.DEFAULT_WIDTH_H  # h, s.d. of the dose pulses (>= 2 dt)
    coords = None if grid is None else tuple(jnp.asarray(c) for c in grid.coordinates())

    def local_input(agent, t, p):
        """ng/mL/h deposited into the depot of ``agent``."""
        rate = input_value(f"depot_rate_{agent}", INPUTS[f"depot_rate_{agent}"], t, p)
        return therapy.local_input(t, therapy.local(p, agent), p["dose_width_h"], coords, rate=rate)

    def derived(t, y, p):
        T, S = y["tumor"], y["stem"]
        tum = T + S
        phi = sum(y[c] for c in CELLS)
        free = 1.0 - phi / p["capacity"]
        occ = y["apd1"] / (y["apd1"] + p["ec50_apd1"])
        pd_signal = y["pdl1"] * (1.0 - occ)
        tgfb_act = y["tgfb"] / (1.0 + y["tgfbi"] / p["ec50_tgfbi"])
        return T, S, tum, phi, free, pd_signal, tgfb_act

    def reactions(t, y, p):
        T, S, tum, phi, free, pd, B = derived(t, y, p)
        I, L2, L12, L10, C = y["ifng"], y["il2"], y["il12"], y["il10"], y["cxcl"]
        E, X, K, R, Md = y["cd8"], y["cd8_ex"], y["nk"], y["treg"], y["mdsc"]
        M1, M2, P, Hm, V = y["m1"], y["m2"], y["pdl1"], y["memory"], y["vessel"]
        engaged = tum / (p["kill_sat"] + tum)  # antigen contact (saturating)

        # -- tumor -----------------------------------------------------------------
        supply = 1.0 - p["supply_weight"] * (1.0 - V)
        antiprolif = 1.0 - p["a1_antiprolif"] * hill(I, p["ec50_a1"])              # A1
        apoptosis = p["a1_apoptosis"] * hill(I, p["ec50_apoptosis"], p["hill_apoptosis"])  # A1/P6
        suppress_ctl = 1.0 / ((1.0 + p["p1_kill_inhibition"] * pd)                 # P1
                              * (1.0 + p["p5_ido"] * P)                            # P5
                              * (1.0 + p["p7_tgfb_ctl"] * hill(B, p["ec50_tgfb"]))  # P7
                              * (1.0 + p["mdsc_suppression"] * Md)                 # P4
                              * (1.0 + p["treg_suppression"] * R))                 # P3/P7
        # chronic signalling: a threshold (Hill) of the slow exposure memory, so pulses that
        # let the memory fall between doses stay below it and sustained exposure crosses it
        chronic = hill(Hm, p["chronic_threshold"], p["hill_chronic"])                     # P1-P3
        ctl = p["kill_cd8"] * E * (1.0 + p["a2_mhc"] * hill(I, p["ec50_a2"])) * suppress_ctl  # A2
        # P1 on NK cells: NK cells in tumors express PD-1 and tumor PD-L1 inhibits their
        # killing (Hsu 2018). Gated by chronic signalling: an acquired state of sustained
        # IFN-γ exposure (as the ISG resistance program of tumors under prolonged IFN-γ,
        # Benci 2016), so pulses leave NK killing alone; through the PD-1 signal (× pd), so
        # PD-1 blockade removes it, as it removes the chronic channel of P2
        nk = (p["kill_nk"] * K * (1.0 + p["a5_nk"] * hill(I, p["ec50_a5"]))              # A5
              / (1.0 + p["p7_tgfb_ctl"] * hill(B, p["ec50_tgfb"]))
              / (1.0 + p["p1_chronic_nk"] * pd * chronic))                               # P1
        mac = p["kill_m1"] * M1                                                           # A4
        kill_per_tumor = (ctl + nk + mac) / (p["kill_sat"] + tum)
        # P6 window: chronic exposure (memory Hm) converts only while the current level lies
        # between ec50_stem (low-dose PI3K-Akt-Notch1 arm) and ec50_apoptosis (JAK/STAT arm)
        high_dose_off = 1.0 - hill(I, p["ec50_apoptosis"], p["hill_apoptosis"])
        low_dose_on = hill(I, p["ec50_stem"], p["hill_apoptosis"])
        to_stem = p["p6_stemness"] * Hm * low_dose_on * high_dose_off * T                 # P6
        from_stem = p["stem_reversion"] * S
        dT = (p["growth_tumor"] * supply * antiprolif * T * free
              - kill_per_tumor * T - apoptosis * T - to_stem + from_stem)
        dS = (p["growth_stem"] * supply * antiprolif * S * free
              - p["stem_resistance"] * (kill_per_tumor + apoptosis) * S + to_stem - from_stem)

        # -- effector and regulatory cells ------------------------------------------
        # A3 at the vessel wall: endothelium sees local plus plasma-borne IFN-γ and displays
        # CXCL9/10 that effectors need to extravasate (Mikucki 2015), so systemic IFN-γ
        # recruits effectors even where tissue uptake keeps it from reaching tumor cells
        # the luminal surface is bathed in plasma: the plasma level counts in full (the
        # interstitial : plasma partition applies to what crosses into tissue, not to it)
        i_wall = I + _plasma_now("ifng", t, p)
        c_wall = C + p["a3_endothelial"] * hill(i_wall, p["ec50_a3"])
        chemo = p["rec_basal"] + (1.0 - p["rec_basal"]) * hill(c_wall, p["ec50_cxcl"])   # A3
        # A3 adhesion: firm arrest on ICAM-1/VCAM-1, which IFN-γ induces on endothelium, is a
        # separate step of the extravasation cascade (Springer 1994), so it multiplies the
        # chemokine-gated rate; the endothelium sees the plasma-borne IFN-γ undiluted
        adhesion = 1.0 + p["a3_adhesion"] * hill(i_wall, p["ec50_endothelium"])          # A3
        chemo = chemo * adhesion
        secr_supp = 1.0 / (1.0 + p["p1_secretion_inhibition"] * pd)                       # P1
        # P2: persistent antigen (engaged) exhausts through PD-1 signalling plus a
        # PD-1-independent share (Odorizzi 2015: PD-1-deficient CD8 T cells still exhaust under
        # chronic antigen), so blockade slows it only. Chronic IFN-γ signalling adds exhaustion
        # through the PD-1 ligand it induces (× pd): PD-1 blockade removes that channel, so
        # IFN-γ given on top of blockade does not exhaust the effectors the blockade frees
        exhaustion = p["p2_exhaustion"] * E * ((pd + p["p2_pd_independent"]) * engaged     # P2
                                               + pd * p["p2_chronic"] * chronic)
        dE = (p["rec_cd8"] * V * chemo * free
              + p["a7_prolif_cd8"] * hill(L2, p["ec50_il2"]) * E * free                  # A7
              - exhaustion - p["death_cd8"] * E)
        dX = exhaustion - p["death_cd8_ex"] * X
        dK = (p["rec_nk"] * V * chemo * free
              + p["a7_prolif_nk"] * hill(L2, p["ec50_il2"]) * K * free                   # A7
              - p["death_nk"] * K)
        # P3 at the vessel wall: Tregs extravasate through the same CXCR3 and adhesion steps
        # as effectors (share p3_cxcr3), so IFN-γ recruits them acutely as well as chronically
        treg_entry = 1.0 - p["p3_cxcr3"] + p["p3_cxcr3"] * chemo                          # P3
        dR = (p["rec_treg"] * V * (1.0 + p["p3_treg"] * chronic) * treg_entry * free        # P3
              + p["a7_prolif_treg"] * hill(L2, p["ec50_il2_treg"]) * R * free
              * (1.0 + p["p7_tgfb_treg"] * hill(B, p["ec50_tgfb"]))                       # P7
              - p["death_treg"] * R)
        # P4 follows the exposure memory: the NLRP3/WNT5a/CXCR2 axis is an adaptive resistance
        # that builds over days of IFN-γ/PD-L1 signalling (Theivanthiran 2020), not a response
        # to the current level
        dMd = (p["rec_mdsc"] * V * (1.0 + p["p4_mdsc"] * Hm) * free                       # P4
               - p["death_mdsc"] * Md)
        polar = p["a4_polarize"] * hill(I, p["ec50_a4"]) * M2                             # A4
        revert = p["m1_to_m2"] * (1.0 + hill(L10, p["ec50_il10"]) + hill(B, p["ec50_tgfb"])) * M1
        # A4 in the blood: plasma IFN-γ activates circulating monocytes, so a share of the
        # recruits enters already M1 (systemic IFN-γ acts on cells it reaches undiluted)
        primed = p["a4_systemic"] * hill(_plasma_now("ifng", t, p), p["ec50_monocyte"])        # A4
        dM1 = p["rec_mac"] * V * free * primed + polar - revert - p["death_mac"] * M1
        dM2 = p["rec_mac"] * V * free * (1.0 - primed) - polar + revert - p["death_mac"] * M2

        # -- cytokines --------------------------------------------------------------
        il12_boost = 1.0 + p["a6_il12_to_ifng"] * hill(L12, p["ec50_il12"])               # A6
        il10_supp = 1.0 / (1.0 + p["p7_il10"] * hill(L10, p["ec50_il10"]))               # P7
        dI = p["secr_ifng"] * (E * engaged + K) * il12_boost * secr_supp * il10_supp
        dL12 = p["secr_il12"] * M1 * (1.0 + p["a6_ifng_to_il12"] * hill(I, p["ec50_a6"]))  # A6
        dL2 = p["secr_il2"] * E * engaged * secr_supp                                     # A7
        dB = (p["secr_tgfb"] * tum * (1.0 + p["p3_tgfb"] * hill(I, p["ec50_p3"]))         # P3
              + p["secr_tgfb_reg"] * (R + M2))
        dL10 = p["secr_il10"] * (M2 + R + Md)
        dC = p["a3_cxcl"] * (tum + M1 + M2 + Md) * (p["cxcl_basal"]                       # A3
                                                   + (1 - p["cxcl_basal"]) * hill(I, p["ec50_a3"]))

        # -- states -----------------------------------------------------------------
        blocker = y["pdl1i"] / (y["pdl1i"] + p["ec50_pdl1i"])
        # P1: relaxes toward target(I) at decay_pdl1 + p1_on_rate·h(I): fast up, slow down;
        # the steady state is the dose response itself (EC50 0.1 ng/mL, Hill 1.26).
        h_pdl1 = hill(I, p["ec50_pdl1"], p["hill_pdl1"])
        target = p["pdl1_basal"] + (1.0 - p["pdl1_basal"]) * p["p1_induction"] * (1.0 - blocker) * h_pdl1
        dP = p["decay_pdl1"] * target + p["p1_on_rate"] * h_pdl1 * (target - P)           # P1
        dH = p["decay_memory"] * hill(I, p["ec50_memory"], p["hill_memory"])
        dV = (p["angiogenesis"] * tum * (1.0 - V)
              - p["a8_antiangio"] * hill(I, p["ec50_a8"]) * V)                            # A8

        out = {"tumor": dT, "stem": dS, "cd8": dE, "cd8_ex": dX, "nk": dK, "treg": dR,
               "mdsc": dMd, "m1": dM1, "m2": dM2, "ifng": dI, "il2": dL2, "il12": dL12,
               "tgfb": dB, "il10": dL10, "cxcl": dC, "pdl1": dP, "memory": dH, "vessel": dV}

        # -- therapy ----------------------------------------------------------------
        for agent, field in SYSTEMIC.items():
            src = p[f"perm_{agent}"] * V * p[f"partition_{agent}"] * _plasma_now(agent, t, p)
            out[field] = out.get(field, 0.0) + src
        for agent, depot in LOCAL.items():
            out[depot] = local_input(agent, t, p)
            out[agent] = out[agent] + p[f"decay_{depot}"] * y[depot]
        return out

    def local_decay(t, y, p):
        phi = sum(y[c] for c in CELLS)
        E, K, R, V = y["cd8"], y["nk"], y["treg"], y["vessel"]
        return {
            # saturable receptor-mediated uptake: k(I)·I = uptake·φ·I/(1 + I/Km)
            "ifng": p["uptake_ifng"] * phi / (1.0 + jnp.maximum(y["ifng"], 0.0) / p["km_ifng"]) + p["perm_ifng"] * V,
            "il2": p["uptake_il2"] * (E + K) + p["uptake_il2_treg"] * R,
            "il12": p["uptake_il12"] * (E + K),
            "cxcl": p["uptake_cxcl"] * (E + K),
            "apd1": p["perm_pd1"] * V,
            "pdl1i": p["perm_pdl1i"] * V,
            "tgfbi": p["perm_tgfbi"] * V,
        }

    observables = tme_observables(plasma)
    return Model(species, reactions, params, local_decay=local_decay, name=name,
                 observables=observables, inputs=INPUTS)


# -- observables -----------------------------------------------------------------------------
def _integral(f, grid):
    """∑ f · cell volume (µm^ndim; µm³ on spherical shells)."""
    return jnp.sum(f * jnp.asarray(grid.cell_volumes(), f.dtype))


def _weighted_mean(f, w, grid):
    """Mean of ``f`` weighted by the density ``w`` (0 where ``w`` vanishes everywhere)."""
    total = _integral(w, grid)
    safe = jnp.where(total > 0, total, 1.0)
    return jnp.where(total > 0, _integral(f * w, grid) / safe, 0.0)


def _ratio(a, b):
    safe = jnp.where(b > 0, b, 1.0)
    return jnp.where(b > 0, a / safe, 0.0)


def infiltration_depth(effectors, tumor, grid):
    """Effector-weighted mean depth (µm) of effector cells inside the tumor.

    The tumor is taken as the ball (disk in 2D, interval in 1D) around the tumor's
    cell-weighted centroid whose volume is that of the tumor region, ∑ vol · tumor / max(tumor)
    (exact for a uniformly packed tumor). Depth of an effector at distance r from the centre is max(R - r, 0): 0 at and outside the
    rim, R at the centre. Effectors spread uniformly over a 2D disk give R/3, in 3D R/4.
    Spherical grids are centred at r = 0.
    """
    volumes = jnp.asarray(grid.cell_volumes(), tumor.dtype)
    peak = jnp.max(tumor)
    occupied = jnp.sum(volumes * tumor) / jnp.where(peak > 0, peak, 1.0)  # µm^d of tumor region
    if grid.geometry == "spherical":
        r = jnp.asarray(grid.coordinates()[0], tumor.dtype)
        radius = (3 * occupied / (4 * math.pi)) ** (1 / 3)
    else:
        coords = [jnp.asarray(c, tumor.dtype) for c in grid.coordinates()]
        centre = [_weighted_mean(c, tumor, grid) for c in coords]
        r = jnp.sqrt(sum((c - m) ** 2 for c, m in zip(coords, centre)))
        d = grid.ndim
        unit_ball = {1: 2.0, 2: math.pi, 3: 4 * math.pi / 3}[d]
        radius = (occupied / unit_ball) ** (1 / d)
    return _weighted_mean(jnp.maximum(radius - r, 0.0), effectors, grid)


def tme_observables(plasma) -> tuple[Observable, ...]:
    """The per-save summaries (units: cell volumes in µm^ndim, µm³ on shells)."""

    def tum(y):
        return y["tumor"] + y["stem"]

    def pdl1_sd(t, y, p, g):
        mean = _weighted_mean(y["pdl1"], tum(y), g)
        return jnp.sqrt(jnp.maximum(_weighted_mean((y["pdl1"] - mean) ** 2, tum(y), g), 0.0))

    obs = [
        Observable("tumor_burden", lambda t, y, p, g: _integral(tum(y), g), "µm^ndim",
                   "tumor + stem-like cell volume: ∑ (tumor + stem) × cell volume"),
        Observable("stem_burden", lambda t, y, p, g: _integral(y["stem"], g), "µm^ndim",
                   "stem-like tumor cell volume"),
        Observable("stem_fraction", lambda t, y, p, g: _ratio(_integral(y["stem"], g), _integral(tum(y), g)),
                   "1", "stem-like share of the tumor burden"),
        Observable("pdl1_mean", lambda t, y, p, g: _weighted_mean(y["pdl1"], tum(y), g), "1",
                   "tumor-cell-weighted mean PD-L1 level"),
        Observable("pdl1_sd", pdl1_sd, "1", "tumor-cell-weighted spatial s.d. of PD-L1 (spread)"),
        Observable("ifng_intratumoral", lambda t, y, p, g: _weighted_mean(y["ifng"], tum(y), g), "ng/mL",
                   "tumor-cell-weighted mean IFN-γ concentration"),
        Observable("il12_intratumoral", lambda t, y, p, g: _weighted_mean(y["il12"], tum(y), g), "ng/mL",
                   "tumor-cell-weighted mean IL-12 concentration"),
        Observable("cd8_treg_ratio",
                   lambda t, y, p, g: _ratio(_integral(y["cd8"], g), _integral(y["treg"], g)), "1",
                   "effector CD8+ over Treg cell volume in the domain (0 if no Tregs)"),
        Observable("exhausted_fraction",
                   lambda t, y, p, g: _ratio(_integral(y["cd8_ex"], g),
                                             _integral(y["cd8"] + y["cd8_ex"], g)), "1",
                   "exhausted share of CD8+ T cells"),
        Observable("mdsc_load", lambda t, y, p, g: _integral(y["mdsc"], g), "µm^ndim",
                   "MDSC cell volume in the domain"),
        Observable("infiltration_depth",
                   lambda t, y, p, g: infiltration_depth(y["cd8"] + y["nk"], tum(y), g), "µm",
                   "effector (CD8+ + NK) weighted mean depth inside the tumor's equivalent ball"),
    ]
    for agent, field in SYSTEMIC.items():
        obs.append(Observable(f"plasma_{agent}", lambda t, y, p, g, a=agent: plasma(a, t, p), "ng/mL",
                              f"plasma concentration of systemic {agent} (PK model)"))
        if field == "ifng":
            continue  # tissue IFN-γ is ifng_intratumoral
        obs.append(Observable(f"tissue_{field}", lambda t, y, p, g, f=field: _weighted_mean(y[f], tum(y), g),
                              "ng/mL", f"tumor-cell-weighted mean tissue level of {field}"))
    return tuple(obs)


def model():
    """Zero-argument entry point for ``load_model("tmepde.models.tme:model")``."""
    return tme_model()


def default_params(grid=None, dtype=None, **overrides):
    return tme_model(grid=grid).params(dtype=dtype, **overrides)


# -- initial conditions ----------------------------------------------------------------------
def initial_conditions(grid, *, tumor_radius=None, centre=None, tumor_density=0.6,
                       stem_fraction=0.02, vessel_density=0.5, vessel_spots=12,
                       vessel_width=None, infiltrate=None, seed=0) -> dict:
    """Numpy fields for a 2D/3D tumor section (or 1D transect) on ``grid``.

    tumor: a disk/ball of ``tumor_density`` (smooth edge, one voxel wide) of radius
    ``tumor_radius`` (default 30 % of the smallest extent) at ``centre`` (default: middle);
    a ``stem_fraction`` of it stem-like. vessel: background ``vessel_density`` plus
    ``vessel_spots`` Gaussian vessel clusters at random positions (max 1). Immune infiltrate:
    small volume fractions (dict ``infiltrate`` overrides ``{"cd8": 0.01, ...}``),
    concentrated in the stroma/rim, sparse inside. PD-L1 at its basal level.
    """
    rng = np.random.default_rng(seed)
    X = grid.coordinates()
    ext = grid.extent
    centre = [0.5 * e for e in ext] if centre is None else list(centre)
    R = 0.3 * min(ext) if tumor_radius is None else tumor_radius
    r = np.sqrt(sum((x - c) ** 2 for x, c in zip(X, centre)))
    h = min(grid.spacing)
    inside = 0.5 * (1 - np.tanh((r - R) / h))
    tumor = tumor_density * inside
    width = 2 * h if vessel_width is None else vessel_width
    vessel = np.full(grid.shape, vessel_density * 0.3)
    for _ in range(vessel_spots):
        c = [rng.uniform(0, e) for e in ext]
        d2 = sum((x - ci) ** 2 for x, ci in zip(X, c))
        vessel += vessel_density * np.exp(-0.5 * d2 / width**2)
    vessel = np.clip(vessel, 0, 1)
    inf = {"cd8": 0.01, "nk": 0.005, "treg": 0.003, "mdsc": 0.003, "m1": 0.005, "m2": 0.02}
    inf.update(infiltrate or {})
    rim = 0.3 + 0.7 * (1 - inside)  # immune cells sparser in the tumor core
    out = {"tumor": tumor * (1 - stem_fraction), "stem": tumor * stem_fraction,
           "vessel": vessel, "pdl1": np.full(grid.shape, DEFAULTS["pdl1_basal"])}
    for k, v in inf.items():
        out[k] = v * rim
    return out


def uniform_conditions(tumor=0.3, stem_fraction=0.02, vessel=0.5, infiltrate=None) -> dict:
    """Well-mixed state (scalars): the same tissue as :func:`initial_conditions`' core."""
    inf = {"cd8": 0.01, "nk": 0.005, "treg": 0.003, "mdsc": 0.003, "m1": 0.005, "m2": 0.02}
    inf.update(infiltrate or {})
    out = {"tumor": tumor * (1 - stem_fraction), "stem": tumor * stem_fraction,
           "vessel": vessel, "pdl1": DEFAULTS["pdl1_basal"]}
    out.update(inf)
    return out


def tumor_burden(fields_or_y, model=None):
    """Mean tumor + stem volume fraction per saved time (``fields`` dict of (T, ...))."""
    f = fields_or_y
    return jnp.mean((f["tumor"] + f["stem"]).reshape(f["tumor"].shape[0], -1), axis=1)
