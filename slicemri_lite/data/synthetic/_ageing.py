"""How a synthetic participant ages: marker curves, individual rates and Alzheimer's disease.

Four markers age, each from a participant's *brain age* (age plus a pace shared by all
markers) and at that participant's own rate:

* ``ventricles``: log volume of the lateral ventricles (grows);
* ``hippocampus``: log volume of the hippocampi, amygdalae and entorhinal cortex (shrinks);
* ``cortex``: cortical thickness (thins from the pial side, so sulci widen);
* ``contrast``: the share of grey-white contrast lost.

Ventricular and hippocampal rates are annual log changes that stay at a "young" value
until 50 and rise smoothly to an "old" value from 75 (``cumulative_change``). Every
participant multiplies each marker's rate by their own factor, ``exp(sd z - sd^2 / 2)``
(lognormal, mean 1), and starts from their own size, so two people of the same age
differ in every marker. AD (older participants only) adds, in proportion to the
patient's stage (``ad_severity``), the losses measured in patients against age-matched
controls: hippocampus, amygdala and entorhinal cortex (more), temporo-parietal cortical
thickness and ventricular growth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slicemri_lite.data.synthetic._config import SyntheticConfig

__all__ = [
    "EFFECTS",
    "MARKERS",
    "Markers",
    "Participant",
    "cumulative_change",
    "draw_participant",
    "markers",
    "typical_participant",
]

EFFECTS = ("age", "ad")
MARKERS = ("ventricles", "hippocampus", "cortex", "contrast")
_YOUNG_UNTIL, _OLD_FROM = 50.0, 75.0  # rates change smoothly between these ages
_AGE_ZERO = 20.0  # ageing is counted from here


def cumulative_change(age, young_rate: float, old_rate: float):
    """Sum of annual rates from 20 years to ``age``: ``young_rate`` until 50, ``old_rate`` from 75.

    Between 50 and 75 the rate follows a smoothstep, so the sum has a closed form. Below
    20 it extends the young rate (negative sums: a brain younger than 20).
    """
    age = np.asarray(age, dtype=float)
    span = _OLD_FROM - _YOUNG_UNTIL
    u = np.clip((age - _YOUNG_UNTIL) / span, 0.0, 1.0)
    ramp = span * (u**3 - u**4 / 2) + np.maximum(age - _OLD_FROM, 0.0)  # integral of smoothstep
    return young_rate * (age - _AGE_ZERO) + (old_rate - young_rate) * ramp


@dataclass(frozen=True)
class Participant:
    """One participant's latent anatomy: labels, pace, per-marker rates and sizes."""

    age: float
    sex: str
    diagnosis: str  # "CN" or "AD"
    brain_age: float  # age + a pace shared by every marker
    rates: tuple[float, float, float, float]  # rate factor per marker (MARKERS order), mean 1
    ventricle_size: float  # log volume relative to the template's, at 20
    hippocampus_size: float  # log volume relative to the template's, at 20
    thickness_mm: float  # cortical thickness at 20 minus the typical one
    ad_severity: float  # 0 for CN; 1 = the typical patient
    warp: np.ndarray  # (1, 3, 7, 9, 7) control-point displacements, mm
    head_scale: float  # brain size on the grid after affine registration (template: 1)


def _rate_factor(rng, sd: float) -> float:
    return float(np.exp(sd * rng.standard_normal() - sd**2 / 2))


def draw_participant(rng, cfg: SyntheticConfig, warp: np.ndarray) -> Participant:
    """Draw labels and latent anatomy from ``rng`` (``warp`` is drawn by the caller, after)."""
    age = round(float(rng.uniform(cfg.age_min, cfg.age_max)), 1)
    sex = "F" if rng.uniform() < 0.5 else "M"
    ad = age >= cfg.ad_min_age and rng.uniform() < cfg.ad_prevalence
    years = float(rng.uniform(cfg.ad_years_min, cfg.ad_years_max))
    ad_rate = _rate_factor(rng, cfg.ad_rate_sd)
    typical_years = (cfg.ad_years_min + cfg.ad_years_max) / 2
    sds = (cfg.ventricle_rate_sd, cfg.hippocampus_rate_sd, cfg.cortex_rate_sd, cfg.contrast_rate_sd)
    return Participant(
        age=age,
        sex=sex,
        diagnosis="AD" if ad else "CN",
        brain_age=age + cfg.brain_age_sd * float(rng.standard_normal()),
        rates=tuple(_rate_factor(rng, sd) for sd in sds),
        ventricle_size=cfg.ventricle_size_sd * float(rng.standard_normal()),
        hippocampus_size=cfg.hippocampus_size_sd * float(rng.standard_normal()),
        thickness_mm=cfg.cortex_thickness_sd_mm * float(rng.standard_normal()),
        ad_severity=years * ad_rate / typical_years if ad else 0.0,
        warp=warp,
        head_scale=1.0 + cfg.residual_scale_sd * float(rng.standard_normal()),
    )


def typical_participant(age: float, ad_severity: float = 0.0) -> Participant:
    """The typical participant of an age: brain age = age, every rate factor 1, template size."""
    return Participant(
        age=age,
        sex="M",
        diagnosis="AD" if ad_severity > 0 else "CN",
        brain_age=age,
        rates=(1.0, 1.0, 1.0, 1.0),
        ventricle_size=0.0,
        hippocampus_size=0.0,
        thickness_mm=0.0,
        ad_severity=ad_severity,
        warp=np.zeros((1, 3, 7, 9, 7), dtype=np.float32),
        head_scale=1.0,
    )


@dataclass(frozen=True)
class Markers:
    """What the renderer needs: marker values relative to the template."""

    ventricle_log: float  # log ventricular volume ratio
    hippocampus_log: float  # log volume ratio of the hippocampal grey matter
    amygdala_entorhinal_log: float  # log volume ratio of the amygdala and entorhinal cortex
    thinning_mm: float  # how far the pial surface moved in (negative: thicker cortex)
    ad_thinning_mm: float  # further thinning of the temporo-parietal cortex (AD)
    contrast: float  # share of grey-white contrast lost


def markers(p: Participant, cfg: SyntheticConfig, effects=EFFECTS) -> Markers:
    """Marker values of participant ``p`` with only the named ``effects`` ("age", "ad") applied.

    Without "age" the participant keeps their own anatomy as it was at 20; without "ad"
    an AD patient looks as they would as a control.
    """
    age = "age" in effects
    ad = p.ad_severity if "ad" in effects else 0.0
    rv, rh, rc, rk = p.rates if age else (0.0, 0.0, 0.0, 0.0)
    typical_years = (cfg.ad_years_min + cfg.ad_years_max) / 2
    vent = rv * cumulative_change(p.brain_age, cfg.ventricle_rate_young, cfg.ventricle_rate_old)
    hipp = p.hippocampus_size - float(
        rh * cumulative_change(p.brain_age, cfg.hippocampus_rate_young, cfg.hippocampus_rate_old)
    )
    thickness = (cfg.cortex_thickness_mm + p.thickness_mm) * np.exp(
        -rc * cfg.cortex_rate * (p.brain_age - _AGE_ZERO)
    )
    return Markers(
        ventricle_log=p.ventricle_size + float(vent) + ad * cfg.ad_ventricle_rate * typical_years,
        hippocampus_log=hipp + ad * float(np.log1p(-cfg.ad_hippocampus_loss)),
        amygdala_entorhinal_log=hipp + ad * float(np.log1p(-cfg.ad_amygdala_entorhinal_loss)),
        thinning_mm=float(cfg.cortex_thickness_mm - thickness),
        ad_thinning_mm=ad * cfg.ad_thinning_mm,
        contrast=rk * cfg.contrast_loss_age * (p.brain_age - _AGE_ZERO) / (90.0 - _AGE_ZERO),
    )
