"""Units, plausible ranges and sources of every TME model parameter (``docs/model.md``).

``PARAMETERS[name] = (mechanism, units, low, high, source)``. The default value lives in
:mod:`tmepde.models.tme` (``DEFAULTS``, ``TRANSPORT``, therapy PK); the table in
``docs/model.md`` is generated from both by ``python -m tmepde.models.tme_parameters`` and a
test checks that it has not drifted, that every parameter has an entry and that every
default lies in its range. "est" = our estimate: where no measurement anchors a value we give
a range of about ×/÷ 3-10 around it and say so; fits should treat those as the
weakly identified ones.
"""

from __future__ import annotations

from .._dose_keys import is_dosing_key

EST = "est"
QSPIO = "QSPIO-TNBC (Wang 2019)"
SPQSP = "spQSP-IO (Gong 2021)"

PARAMETERS: dict[str, tuple[str, str, float, float, str]] = {
    # -- tumor ------------------------------------------------------------------------------
    "growth_tumor": ("growth", "1/h", 0.11 / 24, 0.51 / 24, "0.11–0.51 /day mouse (Benzekry 2014; Kuznetsov 1994; de Pillis 2005)"),
    "growth_stem": ("P6", "1/h", 0.05 / 24, 0.3 / 24, EST + " (stem-like cells cycle slower)"),
    "capacity": ("growth", "volume fraction", 0.8, 1.0, "packed tissue"),
    "supply_weight": ("A8", "1", 0.0, 1.0, EST + " (share of growth that needs perfusion)"),
    "kill_sat": ("A2", "volume fraction", 0.05, 0.6, EST),
    "stem_resistance": ("P6", "1", 0.1, 1.0, EST),
    "a1_antiprolif": ("A1", "1", 0.0, 0.9, EST),
    "ec50_a1": ("A1", "ng/mL", 1.0, 20.0, EST + " (JAK/STAT antiproliferative response needs high IFN-γ)"),
    "a1_apoptosis": ("A1", "1/h", 0.005, 0.1, EST),
    "ec50_apoptosis": ("A1/P6", "ng/mL", 5.0, 50.0, EST + " (apoptosis only at high dose; Song 2019)"),
    "hill_apoptosis": ("A1/P6", "1", 1.0, 4.0, EST),
    "a2_mhc": ("A2", "1", 0.0, 3.0, EST + " (MHC-I up to 4-fold); pinned by the clinical scenario: IFN-γ-1b + anti-PD-1 beats anti-PD-1 (at a2_mhc 0 it does not: 0.704 vs 0.680 of untreated at 64², commit 1ff4c5c; 0.673 vs 0.669 before Tregs entered through CXCR3)"),
    "ec50_a2": ("A2", "ng/mL", 0.1, 5.0, EST + " (IRF1 target like PD-L1: sub-ng/mL); pinned with a2_mhc by the clinical scenario (at 5 ng/mL the combination loses to anti-PD-1: 0.656 vs 0.633 of untreated at 64², commit 1ff4c5c; a tie, 0.620 vs 0.621, before Tregs entered through CXCR3)"),
    "kill_cd8": ("A2", "1/h", 0.9 / 24, 16.0 / 24, "0.9–4 /day (QSPIO), 2–16 kills/CTL/day (Halle 2016; Breart 2008)"),
    "kill_nk": ("A5", "1/h", 0.5 / 24, 8.0 / 24, EST),
    "kill_m1": ("A4", "1/h", 0.1 / 24, 4.0 / 24, EST + " (pinned by B6: high-dose killing rests on A1 apoptosis; with rec_mac 3e-3, 1/24 leaves B6 at 0.30 of the ±30 % sample, 1/96 at 0.97)"),
    # -- recruitment, chemokines ----------------------------------------------------------------
    "a3_cxcl": ("A3", "ng/mL/h", 5.0, 80.0, EST),
    "cxcl_basal": ("A3", "1", 0.0, 0.3, EST),
    "ec50_a3": ("A3", "ng/mL", 0.1, 2.0, EST),
    "a3_endothelial": ("A3", "ng/mL", 0.0, 10.0, EST + " (CXCL9/10 on IFN-γ-activated endothelium; vascular CXCR3 ligands gate T-cell entry, Mikucki 2015)"),
    "a3_adhesion": ("A3", "1", 0.0, 3.0, EST + " (IFN-γ induces endothelial ICAM-1, Dustin 1986, and VCAM-1 on tumor vessels, which gates T-cell infiltration, Lugade 2008); pinned with a4_systemic by the clinical scenario (IFN-γ-1b alone ≤ 0.95 × untreated), bounded by B2 in space with A1 apoptosis off (≤ 0.25: an acute low-EC50 action favours continuous exposure; 0.4 gives 1.076 < 1.10) and by the well-mixed B2, B6, B8 under ±30 % (≤ 0.15: 0.81, 0.88, 0.84 of the 64-point sample; 0.25: 0.78, 0.75, 0.77); with the PD-1-gated chronic channel (d900061) 0.4 gives B6 0.59, B8 0.66 of the sample"),
    "ec50_endothelium": ("A3", "ng/mL", 0.05, 5.0, "endothelial ICAM-1 / MHC induction at 1–100 U/mL IFN-γ (Pober 1986; Dustin 1986) × 2e7 U/mg (Actimmune label); 0.1 at the low end, as the IRF1 target PD-L1 (est)"),
    "uptake_cxcl": ("A3", "1/h", 1.0, 20.0, EST),
    "ec50_cxcl": ("A3", "ng/mL", 0.3, 3.0, EST),
    "rec_cd8": ("A3", "volume fraction/h", 5e-4, 1e-2, EST),
    "rec_nk": ("A3/A5", "volume fraction/h", 2e-4, 5e-3, EST),
    "rec_basal": ("A3", "1", 0.05, 0.5, EST),
    "a4_polarize": ("A4", "1/h", 0.01, 0.2, EST),
    "ec50_a4": ("A4", "ng/mL", 0.2, 5.0, EST),
    "m1_to_m2": ("A4/P7", "1/h", 0.002, 0.05, EST),
    "a4_systemic": ("A4", "1", 0.0, 1.0, EST + " (share of monocytes recruited M1 under saturating plasma IFN-γ; s.c. IFN-γ-1b restores monocyte HLA-DR in patients, Döcke 1997); pinned with a3_adhesion by the clinical scenario (IFN-γ-1b alone ≤ 0.95)"),
    "ec50_monocyte": ("A4", "ng/mL", 0.03, 1.0, EST + " (plasma IFN-γ; monocyte HLA-DR / CD64 at 1–100 U/mL)"),
    "rec_mac": ("A4", "volume fraction/h", 5e-4, 5e-3, EST + " (pinned by the infiltrate's composition: macrophages are the largest leukocyte population of most solid tumors, CIBERSORT over TCGA, Thorsson 2018; 3e-3 keeps the default section's initial 0.02 macrophage fraction, 0.029 and 36 % of the immune cells in the tumor at day 30, where 5e-4 let it fall to 0.005, 9 %)"),
    "death_mac": ("A4", "1/h", 0.003, 0.03, EST),
    "a5_nk": ("A5", "1", 0.0, 3.0, EST),
    "ec50_a5": ("A5", "ng/mL", 0.2, 5.0, EST),
    # -- cytokines ------------------------------------------------------------------------------
    "secr_ifng": ("A6", "ng/mL/h", 30.0, 2000.0, "7.6e-10 ng/s per active T cell (" + SPQSP + "; Bouchnita 2017) × 1e9 cells/mL × active share 3–100 %"),
    "a6_il12_to_ifng": ("A6", "1", 0.0, 10.0, EST),
    "ec50_il12": ("A6", "ng/mL", 0.1, 5.0, EST),
    "secr_il12": ("A6", "ng/mL/h", 0.5, 10.0, EST),
    "a6_ifng_to_il12": ("A6", "1", 0.0, 10.0, EST),
    "ec50_a6": ("A6", "ng/mL", 0.2, 5.0, EST),
    "uptake_il12": ("A6", "1/h", 0.2, 5.0, EST),
    "uptake_ifng": ("B5", "1/h", 30.0, 80.0, "first-order clearance Vmax/Km per unit cell fraction = n·R·k_e/Kd: 1e9 cells/mL, R ≈ 600 free IFNGR1 per cell (200–25,000, Farrar & Schreiber 1993), Kd 0.1 nM, k_e ≈ 0.1 /min (est); pinned by B5: dense-tissue decay length √(D/k) ≤ 40 µm (Centofanti 2023: 30–40 µm) needs ≥ 38 /h, sparse PD-L1 reach ≥ 800 µm (Hoekstra 2020) needs ≤ ~100 /h (≤ 53 /h at 0.7 × PD-L1 induction); spQSP-IO 3.6 /h per tumor voxel"),
    "km_ifng": ("B5", "ng/mL", 0.3, 30.0, "IFNGR1 Kd 1e-10–1e-9 M (Bach 1997) × 33 kDa IFN-γ dimer (2 × 16.5 kDa, Actimmune label)"),
    "secr_il2": ("A7", "ng/mL/h", 10.0, 200.0, EST),
    "a7_prolif_cd8": ("A7", "1/h", 0.01, 0.06, EST + " (doubling 0.5–3 days)"),
    "a7_prolif_nk": ("A7", "1/h", 0.005, 0.05, EST),
    "ec50_il2": ("A7", "ng/mL", 1.0, 10.0, "0.32 nM × 15.5 kDa (" + QSPIO + ")"),
    "ec50_il2_treg": ("P3", "ng/mL", 0.1, 2.0, EST + " (CD25-high, ~10× lower than Teff)"),
    "uptake_il2": ("A7", "1/h", 2.0, 50.0, EST),
    "uptake_il2_treg": ("P3", "1/h", 10.0, 200.0, EST + " (CD25 sink)"),
    "death_cd8": ("A2", "1/h", 0.003, 0.03, EST),
    "death_nk": ("A5", "1/h", 0.003, 0.03, EST),
    "angiogenesis": ("A8", "1/h", 0.0, 0.01, EST),
    "a8_antiangio": ("A8", "1/h", 0.0, 0.02, EST),
    "ec50_a8": ("A8", "ng/mL", 0.2, 5.0, EST),
    # -- PD-L1, exhaustion ------------------------------------------------------------------------
    "p1_induction": ("P1", "1", 0.0, 1.0, "switch (1 = full induction)"),
    "p1_on_rate": ("P1", "1/h", 0.05, 2.0, EST + " (PD-L1 up within hours: half-way in ~5 h at 0.1 /h); pinned by B2 in space: fast induction with slow relaxation holds each pulse's peak"),
    "ec50_pdl1": ("P1", "ng/mL", 0.03, 0.3, "0.1 ng/mL ≈ 3 pM (" + SPQSP + "; Shin 2017)"),
    "hill_pdl1": ("P1", "1", 1.0, 1.5, "1.26 (" + SPQSP + ")"),
    "pdl1_basal": ("P1", "1", 0.1, 0.3, "up to 6-fold induction (" + SPQSP + ")"),
    "p1_kill_inhibition": ("P1", "1", 0.5, 10.0, EST),
    "p1_secretion_inhibition": ("P1", "1", 0.5, 10.0, EST),
    "p1_chronic_nk": ("P1", "1", 0.0, 10.0, EST + " (PD-1 on tumor NK cells, whose killing tumor PD-L1 inhibits and PD-1/PD-L1 blockade restores, Hsu 2018 J Clin Invest 128:4654; gated by chronic IFN-γ signalling as the ISG resistance program, Benci 2016); 3 = p1_kill_inhibition: at full chronic signalling NK cells feel the PD-1 signal as CTLs do; pinned by B2 in space with A1 apoptosis off (≥ 1.10 on the 96² × 25 µm section of configs/scenarios: 0 gives 1.019, 2 gives 1.119, 3 gives 1.137; 1 gives 1.086 at 48² × 50 µm) and bounded by the clinical combination (it acts through pd, so anti-PD-1 removes it; the PD-1-independent form lost the combination, docs/model.md)"),
    "ec50_apd1": ("therapy", "ng/mL", 100.0, 5000.0, EST + " (receptor occupancy)"),
    "p2_exhaustion": ("P2", "1/h", 0.05 / 24, 0.3 / 24, "0.05–0.1 /day (QSPIO; SPQSP_PDAC), up to 0.3 /day est"),
    "p2_pd_independent": ("P2", "1", 0.0, 0.5, EST + " (exhaustion without PD-1 signalling, in units of the PD-1 signal; PD-1-deficient CD8 T cells still exhaust, Odorizzi 2015); 0.4 ≈ the untreated PD-1 signal, so full blockade halves exhaustion"),
    "p2_chronic": ("P2", "1", 0.0, 10.0, EST + "; acts through PD-1 (× pd ≈ 0.5 under IFN-γ): × p2_exhaustion ≈ 0.3 /day at full chronic signalling without blockade; chosen for B2 with A1 apoptosis off at an earlier form of the chronic arm (3: 1.095 < 1.10, 6: 1.13)"),
    "death_cd8_ex": ("P2", "1/h", 0.001, 0.02, EST),
    "ec50_memory": ("P2/P3", "ng/mL", 0.05, 1.0, EST + " (IFN-γ level that half-fills the exposure memory)"),
    "hill_memory": ("P2/P3", "1", 1.0, 4.0, EST),
    "chronic_threshold": ("P2/P3", "1", 0.2, 0.8, EST + "; memory level of half-max chronic signalling (exhaustion, Treg recruitment): above pulsed (q48h) exposure, below sustained 0.2 ng/mL; pinned by B2 in space"),
    "hill_chronic": ("P2/P3", "1", 1.0, 6.0, EST + " (switch-like)"),
    # -- Tregs, TGF-β, MDSC, IDO, stemness, IL-10 ---------------------------------------------------
    "rec_treg": ("P3", "volume fraction/h", 5e-5, 2e-3, EST),
    "p3_treg": ("P3", "1", 0.0, 10.0, EST + "; fold increase at full chronic signalling; pinned by B2 (Tregs ≥ 1.1× under continuous vs pulsed exposure: with P1 on NK cells, p1_chronic_nk 3, the continuous arm's larger tumor leaves less free space for recruitment, and B2 held at 0.69 of the ±30 % sample with 2, 0.86 with 2.5, 0.94 with 3 before Tregs entered through CXCR3; 0.98 with 2.5 since) and the clinical combination (64² × 80 µm, combination vs anti-PD-1 alone, with Tregs entering through CXCR3 at commit 1ff4c5c: 2 gives 0.068 vs 0.076 of untreated, 2.5 gives 0.085 vs 0.088, 3 gives 0.103 vs 0.101: the combination loses; before the CXCR3 entry 2.5 gave 0.101 vs 0.107 and 3 a tie, 0.122 vs 0.121)"),
    "p3_cxcr3": ("P3", "1", 0.0, 1.0, EST + " (share of Treg recruitment gated as effector recruitment, by CXCL9/10 at the vessel wall and the endothelial adhesion step: IFN-γ induces T-bet and CXCR3 on Tregs, Koch 2009; CXCR3+ Tregs accumulate in tumors and need CXCR3 to do so, Redjimi 2012, Moreno Ayala 2023); pinned by the clinical scenario (Tregs rise under IFN-γ-1b alone: 64² × 80 µm, 1.08× untreated at 1, 0.98× at 0)"),
    "secr_tgfb": ("P3", "ng/mL/h", 0.2, 5.0, EST),
    "p3_tgfb": ("P3", "1", 0.0, 10.0, EST + " (IFN-γ lowers NSDHL -> TGF-β1)"),
    "ec50_p3": ("P3", "ng/mL", 0.1, 2.0, EST + "; pinned by B8 robustness (0.5: 0.80, 0.15: 0.84 of the ±30 % sample)"),
    "secr_tgfb_reg": ("P7", "ng/mL/h", 0.5, 10.0, EST),
    "a7_prolif_treg": ("P3", "1/h", 0.005, 0.05, EST),
    "death_treg": ("P3", "1/h", 0.003, 0.03, EST),
    "rec_mdsc": ("P4", "volume fraction/h", 5e-5, 2e-3, EST),
    "p4_mdsc": ("P4", "1", 0.0, 10.0, EST + " (NLRP3/WNT5a/CXCR2, Theivanthiran 2020); fold increase at a full exposure memory"),
    "death_mdsc": ("P4", "1/h", 0.003, 0.03, EST),
    "mdsc_suppression": ("P4", "1 per volume fraction", 2.0, 100.0, EST),
    "treg_suppression": ("P3", "1 per volume fraction", 2.0, 100.0, EST),
    "p5_ido": ("P5", "1", 0.0, 3.0, EST),
    "p6_stemness": ("P6", "1/h", 0.0, 0.01, EST),
    "ec50_stem": ("P6", "ng/mL", 0.3, 5.0, EST + " (lower edge of the low-dose window; Song 2019: low dose -> ICAM1-PI3K-Akt-Notch1 stemness, high dose -> JAK/STAT apoptosis)"),
    "stem_reversion": ("P6", "1/h", 0.001, 0.02, EST),
    "p7_tgfb_ctl": ("P7", "1", 0.0, 5.0, EST),
    "ec50_tgfb": ("P7", "ng/mL", 1.0, 10.0, "0.14 nM × 25 kDa (" + QSPIO + ")"),
    "p7_tgfb_treg": ("P7", "1", 0.0, 3.0, EST),
    "p7_il10": ("P7", "1", 0.0, 5.0, EST),
    "ec50_il10": ("P7", "ng/mL", 0.05, 0.5, "8 pM × 18.6 kDa (" + QSPIO + ")"),
    "secr_il10": ("P7", "ng/mL/h", 0.2, 5.0, EST),
    "ec50_pdl1i": ("therapy", "ng/mL", 1.0, 100.0, EST),
    "ec50_tgfbi": ("therapy", "ng/mL", 100.0, 1e4, EST),
    "it_volume_ml": ("therapy", "mL", 0.01, 1.0, "tumor volume for well-mixed intratumoral dosing"),
    "dose_width_h": ("therapy", "h", 0.25, 2.0, "numerical: smooth bolus s.d. (≥ 2 dt)"),
    # -- transport: D (µm²/s) ---------------------------------------------------------------------
    "D_tumor": ("motility", "µm²/s", 0.001, 0.02, EST + " (front 2√(Dr) ≈ 20 µm/day)"),
    "D_stem": ("motility", "µm²/s", 0.001, 0.02, EST),
    "D_cd8": ("motility", "µm²/s", 0.05, 1.0, "3–60 µm²/min (Boissonnas 2007; PhysiCell)"),
    "D_cd8_ex": ("motility", "µm²/s", 0.01, 0.5, EST + " (exhausted cells slower)"),
    "D_nk": ("motility", "µm²/s", 0.05, 1.0, EST + " (as CD8)"),
    "D_treg": ("motility", "µm²/s", 0.05, 1.0, EST),
    "D_mdsc": ("motility", "µm²/s", 0.05, 1.0, EST),
    "D_m1": ("motility", "µm²/s", 0.005, 0.2, EST),
    "D_m2": ("motility", "µm²/s", 0.005, 0.2, EST),
    "D_ifng": ("B5", "µm²/s", 12.6, 100.0, "16.5 in tumor tissue (Popel-lab fit to Ramanujan 2002, range 12.6–16.5); 100 in free solution (" + SPQSP + ")"),
    "D_il2": ("A7", "µm²/s", 30.0, 150.0, "≈ 100 (" + SPQSP + ")"),
    "D_il12": ("A6", "µm²/s", 10.0, 100.0, EST + " (70 kDa)"),
    "D_tgfb": ("P3", "µm²/s", 10.0, 100.0, "27 (Popel-lab fit)"),
    "D_il10": ("P7", "µm²/s", 10.0, 100.0, EST),
    "D_cxcl": ("A3", "µm²/s", 30.0, 150.0, EST + " (8–10 kDa)"),
    "D_apd1": ("therapy", "µm²/s", 1.0, 30.0, EST + " (IgG in tissue)"),
    "D_pdl1i": ("therapy", "µm²/s", 50.0, 500.0, EST + " (small molecule)"),
    "D_tgfbi": ("therapy", "µm²/s", 1.0, 30.0, EST + " (antibody / trap)"),
    "chi_cd8": ("A3", "µm²/s per ng/mL", 0.5, 10.0, EST + " (chemotaxis up CXCL9/10)"),
    "chi_nk": ("A3", "µm²/s per ng/mL", 0.5, 10.0, EST),
    # -- transport: linear decay (1/h) ------------------------------------------------------------
    "decay_ifng": ("B5", "1/h", 0.15, 0.35, "cell-free: t½ 4.5 h, the long end of the measured 2–4.5 h (" + SPQSP + " 6.5e-5 /s; Hofstra 1998), whose clearance already contains the receptor uptake modelled by uptake_ifng"),
    "decay_il2": ("A7", "1/h", 0.1, 6.9, "t½ 0.1–7 h (" + QSPIO + ")"),
    "decay_il12": ("A6", "1/h", 0.01, 0.1, "0.023 /h (" + QSPIO + ")"),
    "decay_tgfb": ("P3", "1/h", 0.3, 1.0, "14.3 /day (" + QSPIO + ")"),
    "decay_il10": ("P7", "1/h", 0.08, 0.35, "4 /day (" + QSPIO + ")"),
    "decay_cxcl": ("A3", "1/h", 0.2, 1.0, EST + " (t½ 1.5 h)"),
    "decay_pdl1": ("P1", "1/h", 0.02, 0.08, "≈ 1 /day relaxation (" + QSPIO + ")"),
    "decay_memory": ("P2", "1/h", 1 / 240, 1 / 24, EST + " (exposure memory, 1–10 days)"),
    "decay_pdl1i": ("therapy", "1/h", 0.03, 0.5, EST),
    "decay_depot_ifng": ("therapy", "1/h", 0.2, 5.0, EST + " (release from the injection depot)"),
    "decay_depot_il12": ("therapy", "1/h", 0.05, 2.0, EST + " (IL-12 vector / depot release)"),
}

# Which of behaviours B1–B8 pins each "est" parameter: each parameter alone at the low and at
# the high end of its range, everything else at the defaults, on the harnesses of
# tests/test_tme_behaviours.py (results/parameter_pins.md). "B6 (high end, ≥ 0.042)": B6 holds at
# the defaults and fails with the parameter at its high end, from about 0.042 up (bisection).
# markdown_table() appends it to the source.
# -- PINS: generated by scripts/parameter_pins.py --write-pins; do not edit by hand --
PINS: dict[str, str] = {
    'growth_stem': 'none within range',
    'supply_weight': 'B7 (high end, ≥ 0.69), B8 (high end, ≥ 0.96)',
    'kill_sat': 'B1 (high end, ≥ 0.57), B8 (low end, ≤ 0.1)',
    'stem_resistance': 'none within range',
    'a1_antiprolif': 'none within range',
    'ec50_a1': 'none within range',
    'a1_apoptosis': 'B1 (low end, ≤ 0.012), B6 (low end, ≤ 0.018)',
    'ec50_apoptosis': 'B1 (high end, ≥ 36), B6 (high end, ≥ 28)',
    'hill_apoptosis': 'B6 (high end, ≥ 3.1)',
    'a2_mhc': 'none within range',
    'ec50_a2': 'B3 (low end, ≤ 0.11)',
    'kill_nk': 'B1 (low end, ≤ 0.022), B3 (high end, ≥ 0.23), B6 (high end, ≥ 0.23), B7 (high end, ≥ 0.18), B8 (high end, ≥ 0.16)',
    'kill_m1': 'B6 (high end, ≥ 0.082), B7 (high end, ≥ 0.11), B8 (high end, ≥ 0.11)',
    'a3_cxcl': 'none within range',
    'cxcl_basal': 'none within range',
    'ec50_a3': 'none within range',
    'a3_endothelial': 'none within range',
    'a3_adhesion': 'B6 (high end, ≥ 2.9), B7 (high end, ≥ 0.91), B8 (high end, ≥ 1)',
    'uptake_cxcl': 'none within range',
    'ec50_cxcl': 'none within range',
    'rec_cd8': 'B1 (high end, ≥ 0.0074), B3 (high end, ≥ 0.0038), B4 (low end, ≤ 0.00061), B6 (high end, ≥ 0.0058), B7 (high end, ≥ 0.0033), B8 (high end, ≥ 0.0033)',
    'rec_nk': 'B1 (both ends, ≤ 0.00027 and ≥ 0.0028), B2 (high end, ≥ 0.0037), B7 (high end, ≥ 0.002), B8 (high end, ≥ 0.002)',
    'rec_basal': 'none within range',
    'a4_polarize': 'none within range',
    'ec50_a4': 'none within range',
    'm1_to_m2': 'none within range',
    'a4_systemic': 'none within range (no effect on the B1–B8 harnesses at either end)',
    'ec50_monocyte': 'none within range (no effect on the B1–B8 harnesses at either end)',
    'rec_mac': 'none within range',
    'death_mac': 'none within range',
    'a5_nk': 'none within range',
    'ec50_a5': 'none within range',
    'a6_il12_to_ifng': 'B1 (high end, ≥ 7.1)',
    'ec50_il12': 'none within range',
    'secr_il12': 'none within range',
    'a6_ifng_to_il12': 'none within range',
    'ec50_a6': 'none within range',
    'uptake_il12': 'none within range',
    'secr_il2': 'none within range',
    'a7_prolif_cd8': 'none within range',
    'a7_prolif_nk': 'none within range',
    'ec50_il2_treg': 'none within range',
    'uptake_il2': 'none within range',
    'uptake_il2_treg': 'none within range',
    'death_cd8': 'B7 (low end, ≤ 0.0045), B8 (low end, ≤ 0.0034)',
    'death_nk': 'none within range',
    'angiogenesis': 'B6 (high end, ≥ 0.0099)',
    'a8_antiangio': 'B1 (high end, ≥ 0.02), B6 (low end, ≤ 0.0021)',
    'ec50_a8': 'none within range',
    'p1_on_rate': 'B5 (high end, ≥ 1.5)',
    'p1_kill_inhibition': 'none within range',
    'p1_secretion_inhibition': 'none within range',
    'p1_chronic_nk': 'none within range',
    'ec50_apd1': 'none within range',
    'p2_pd_independent': 'none within range',
    'p2_chronic': 'none within range',
    'death_cd8_ex': 'none within range',
    'ec50_memory': 'B1 (low end, ≤ 0.1), B2 (both ends, ≤ 0.05 and ≥ 0.26)',
    'hill_memory': 'B2 (low end, ≤ 1.2)',
    'chronic_threshold': 'B2 (high end, ≥ 0.74)',
    'hill_chronic': 'B1 (low end, ≤ 1.6)',
    'rec_treg': 'none within range',
    'p3_treg': 'B2 (low end, ≤ 1.2)',
    'p3_cxcr3': 'none within range',
    'secr_tgfb': 'B7 (low end, ≤ 0.24), B8 (low end, ≤ 0.34)',
    'p3_tgfb': 'B8 (low end, ≤ 0.78)',
    'ec50_p3': 'B8 (high end, ≥ 1.2)',
    'secr_tgfb_reg': 'none within range',
    'a7_prolif_treg': 'B2 (high end, ≥ 0.039)',
    'death_treg': 'none within range',
    'rec_mdsc': 'none within range',
    'p4_mdsc': 'B2 (low end, ≤ 1.3)',
    'death_mdsc': 'none within range',
    'mdsc_suppression': 'none within range',
    'treg_suppression': 'none within range',
    'p5_ido': 'B8 (low end, ≤ 0.2)',
    'p6_stemness': 'B6 (low end, only at 0)',
    'ec50_stem': 'none within range',
    'stem_reversion': 'none within range',
    'p7_tgfb_ctl': 'B3 (low end, ≤ 0.044), B7 (low end, ≤ 0.81), B8 (low end, ≤ 0.88)',
    'p7_tgfb_treg': 'none within range',
    'p7_il10': 'B1 (low end, ≤ 0.28)',
    'secr_il10': 'none within range',
    'ec50_pdl1i': 'B4 (high end, ≥ 35)',
    'ec50_tgfbi': 'none within range',
    'D_tumor': 'none within range',
    'D_stem': 'none within range',
    'D_cd8_ex': 'none within range (no effect on the B1–B8 harnesses at either end)',
    'D_nk': 'none within range (no effect on the B1–B8 harnesses at either end)',
    'D_treg': 'none within range (no effect on the B1–B8 harnesses at either end)',
    'D_mdsc': 'none within range (no effect on the B1–B8 harnesses at either end)',
    'D_m1': 'none within range (no effect on the B1–B8 harnesses at either end)',
    'D_m2': 'none within range (no effect on the B1–B8 harnesses at either end)',
    'D_il12': 'none within range (no effect on the B1–B8 harnesses at either end)',
    'D_il10': 'none within range (no effect on the B1–B8 harnesses at either end)',
    'D_cxcl': 'none within range (no effect on the B1–B8 harnesses at either end)',
    'D_apd1': 'none within range (no effect on the B1–B8 harnesses at either end)',
    'D_pdl1i': 'none within range (no effect on the B1–B8 harnesses at either end)',
    'D_tgfbi': 'none within range (no effect on the B1–B8 harnesses at either end)',
    'chi_cd8': 'none within range (no effect on the B1–B8 harnesses at either end)',
    'chi_nk': 'none within range (no effect on the B1–B8 harnesses at either end)',
    'decay_cxcl': 'none within range',
    'decay_memory': 'none within range',
    'decay_pdl1i': 'none within range',
    'decay_depot_ifng': 'B1 (low end, ≤ 0.4), B3 (low end, ≤ 0.35)',
    'decay_depot_il12': 'none within range (no effect on the B1–B8 harnesses at either end)',
}
# -- end of PINS --

# Per-agent pharmacokinetic and exchange parameters: one row per family.
FAMILIES: dict[str, tuple[str, str, str]] = {
    "pk_<agent>_ke": ("therapy", "1/h", "elimination: IFN-γ-1b s.c. t½ 5.9 h (Actimmune label, 12.3); pembrolizumab t½ 22 d, nivolumab 25 d (labels)"),
    "pk_<agent>_V": ("therapy", "mL", "volume of distribution (labels; `tmepde.therapy`); IFN-γ-1b V/F 177.6 L fitted with ka to the label's Cmax 0.60 ng/mL, AUC 8.29 ng·h/mL per 100 µg/m² (linear: 0.30 ng/mL per clinical 50 µg/m²; `therapy.IFNG_1B_SC`)"),
    "pk_<agent>_ka": ("therapy", "1/h", "s.c./oral absorption: IFN-γ-1b 0.48 /h, peak 7.2 h after the nominal dose time (label: ≈ 7 h)"),
    "pk_<agent>_F": ("therapy", "1", "bioavailability"),
    "perm_<agent>": ("therapy", "1/h", "vessel exchange per unit vessel density, est (IFN-γ 20 /h: tissue/plasma = partition·perm·V/(perm·V + decay + uptake·φ); an upper estimate: tumor PS for a 34 kDa protein ≈ 0.07–0.4 /h, Yuan 1995, Baxter & Jain 1989)"),
    "partition_<agent>": ("therapy", "1", "interstitial : plasma ratio at the vessel wall: IFN-γ 0.5 (plasma proteins, Wiig & Swartz 2012), antibodies 0.3 (est)"),
    "sys_<agent>_times/_amounts": ("therapy", "h / ng", "systemic dose schedule (differentiable)"),
    "it_<agent>_times/_amounts, inf_<agent>_*": ("therapy", "h / ng, ng/h", "intratumoral doses and sustained release"),
    "it_<agent>_x/_y/_z/_width": ("therapy", "µm", "injection site and bleb s.d. (200 µm est)"),
    "decay_<species>, D_<species> not listed": ("transport", "1/h, µm²/s", "0 (declared in `TRANSPORT`)"),
}

# Per-agent vessel-exchange rows ("perm_<agent>", "partition_<agent>"); dosing names are
# tmepde.therapy's (is_dosing_key).
_VESSEL_EXCHANGE_PREFIXES = ("perm_", "partition_")


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def pin_note(name: str) -> str:
    """What pins an "est" parameter, from :data:`PINS`, to append to its source ("" otherwise)."""
    if not PARAMETERS[name][4].startswith(EST) or name not in PINS:
        return ""
    pin = PINS[name]
    if pin.startswith("none"):
        return "; not pinned by B1–B8 within range" + pin[len("none within range"):]
    for end in ("low end", "high end"):
        pin = pin.replace(f"({end}", f"(fails at the {end}")
    return "; pinned by " + pin.replace("(both ends", "(fails at both ends")


def markdown_table(params=None) -> str:
    """The parameter table of ``docs/model.md`` (values from the model's defaults)."""
    import numpy as np

    from .tme import tme_model

    if params is None:
        params = tme_model().default_params()
    lines = ["| parameter | mechanism | default | units | plausible range | source |",
             "|---|---|---|---|---|---|"]
    for name, (mech, units, lo, hi, source) in PARAMETERS.items():
        if name not in params:
            continue
        value = float(np.asarray(params[name]))
        rng = _fmt(lo) if lo == hi else f"{_fmt(lo)}–{_fmt(hi)}"
        source = source + pin_note(name)
        lines.append(f"| `{name}` | {mech} | {_fmt(value)} | {units} | {rng} | {source} |")
    for name, (mech, units, source) in FAMILIES.items():
        lines.append(f"| `{name}` | {mech} | see `tmepde/therapy.py` | {units} | | {source} |")
    return "\n".join(lines) + "\n"


def unlisted(params) -> list[str]:
    """Default parameters that have neither a row nor a family row (should be empty)."""
    return sorted(k for k in params if k not in PARAMETERS and not is_dosing_key(k)
                  and not k.startswith(_VESSEL_EXCHANGE_PREFIXES)
                  and not (k.startswith(("decay_", "D_")) and float(params[k]) == 0.0))


if __name__ == "__main__":
    import sys

    sys.stdout.write(markdown_table())
