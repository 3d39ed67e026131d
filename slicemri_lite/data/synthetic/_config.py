"""``SyntheticConfig``: every number behind the synthetic cohort, each beside its source."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SyntheticConfig"]


@dataclass(frozen=True)
class SyntheticConfig:
    """Every number behind the synthetic cohort, with its source.

    Rates are annual log changes (0.01: about 1 % a year). "Assumption" marks a number
    no cited study gives; those were set once, before any model was run on the cohort.
    Sources (``book/references.bib``): Alfaro-Almagro et al. 2018 (NeuroImage 166:400),
    Barnes et al. 2009 (Neurobiol Aging 30:1711), Cole & Franke 2017 (Trends Neurosci
    40:681), Dickerson et al. 2009 (Cereb Cortex 19:497), Du et al. 2001 (J Neurol
    Neurosurg Psychiatry 71:441), Fjell & Walhovd 2010 (Rev Neurosci 21:187), Fotenos et
    al. 2005 (Neurology 64:1032), Fraser et al. 2015 (NeuroImage 112:364), Jenkinson &
    Smith 2001 (Med Image Anal 5:143), Nobis et al. 2019 (NeuroImage Clin 23:101904),
    Poulin et al. 2011 (Psychiatry Res Neuroimaging 194:7), Raz et al. 2005 (Cereb Cortex
    15:1676), Salat et al. 2004 (Cereb Cortex 14:721), Salat et al. 2009 (NeuroImage
    48:21), Scahill et al. 2003 (Arch Neurol 60:989), Shi et al. 2009 (Hippocampus
    19:1055), Storsve et al. 2014 (J Neurosci 34:8488), Tang et al. 2001 (J Neuroimaging
    11:393).

    Version 4 changed the Alzheimer's pattern and the hippocampal spread between people
    (fixed on a marker measured on the rendered scans, never on a model; see
    ``slicemri_lite.analysis.mtl_grey_volume``): the medial temporal lobe loses tissue to
    CSF (as partial volume shows it at 1 to 4 mm voxels) instead of sliding aside, the
    amygdala and entorhinal cortex lose more than the hippocampus, and the temporo-parietal
    cortex thins.
    """

    age_min: float = 20.0
    age_max: float = 90.0
    ad_min_age: float = 60.0  # nobody younger has AD
    ad_prevalence: float = 0.35  # share of AD among participants aged ad_min_age or more
    # a pace shared by all markers: brain age = age + N(0, sd), the "brain-age gap" that
    # brain-age studies find between people (Cole & Franke 2017); individual rates of
    # shrinkage correlate across regions (Raz 2005); sd: assumption
    brain_age_sd: float = 4.0
    # Ventricles grow slowly in early adulthood and faster late in life (Scahill 2003;
    # Fjell & Walhovd 2010); 5.6 +/- 3.6 %/yr at ages 74-87 (Tang 2001): we take 3 %/yr
    # from 75, the lower side, and 0.5 %/yr before 50 (assumption): x2.8 from 20 to 90.
    ventricle_rate_young: float = 0.005
    ventricle_rate_old: float = 0.03
    # per-person rate factors, log-sd 0.5 (coefficient of variation ~0.5: Tang 2001 found
    # sd/mean 0.64 for ventricular growth; Raz 2005: individual differences in every
    # region's shrinkage); the same spread for every marker (assumption)
    ventricle_rate_sd: float = 0.5
    ventricle_size_sd: float = 0.3  # log-sd of ventricle volume between people (assumption)
    # Hippocampus: 0.85 %/yr averaged over adult samples (Fraser 2015), 1.41 %/yr in
    # older controls (Barnes 2009); we take 0.3 %/yr before 50 and 1.4 %/yr from 75
    hippocampus_rate_young: float = 0.003
    hippocampus_rate_old: float = 0.014
    # Between people: log-sd 0.08 of size at 20 and rate factors of log-sd 0.25 give a
    # log-sd of about 0.11 at 60-80 with the shared pace, the spread of hippocampal volume
    # in UK Biobank's nomograms at those ages (Nobis 2019: 2.5th-97.5th centile about
    # +-20 % around the median)
    hippocampus_rate_sd: float = 0.25
    hippocampus_size_sd: float = 0.08
    # Cortex: thickness falls by 0.35 %/yr of ~2.5 mm (Storsve 2014, ages 23-87), widely,
    # frontal cortex most (Salat 2004): 0.5 mm by 90
    cortex_thickness_mm: float = 2.5
    cortex_rate: float = 0.0035
    cortex_rate_sd: float = 0.5
    cortex_thickness_sd_mm: float = 0.1  # between people (assumption)
    # grey-white contrast falls with age (Salat 2009); share lost by 90: assumption
    contrast_loss_age: float = 0.1
    contrast_rate_sd: float = 0.5
    # AD stage: atrophy accrues for 2 to 8 years before the scan (assumption) at a rate
    # factor with log-sd 0.3 (assumption): ``ad_severity`` = years x factor / 5, from about
    # 0.2 (very mild) to over 2 (moderate); 1 is the typical patient of a mild-AD cohort.
    ad_years_min: float = 2.0
    ad_years_max: float = 8.0
    ad_rate_sd: float = 0.3
    # The typical patient against age-matched controls (each scaled by ad_severity):
    # hippocampal volume 24 % smaller (meta-analysis of 33 MRI studies: Shi 2009);
    # entorhinal cortex 39 % and amygdala about 25 % smaller (Du 2001; Poulin 2011): 32 %
    # for the amygdala-entorhinal region; the temporo-parietal "AD signature" cortex
    # 0.25 mm thinner (Dickerson 2009: 0.2 to 0.3 mm in mild AD); ventricles growing at
    # twice the control late rate, as whole-brain atrophy more than doubles in very mild
    # AD (Fotenos 2005), for the typical 5 years: 16 % larger
    ad_hippocampus_loss: float = 0.24
    ad_amygdala_entorhinal_loss: float = 0.32
    ad_thinning_mm: float = 0.25
    ad_ventricle_rate: float = 0.03
    deformation_mm: float = (
        2.0  # large-scale random deformation (sd per control point, ~60 mm apart)
    )
    fine_deformation_mm: float = 1.5  # finer random deformation (control points ~30 mm apart)
    # The grid holds brains after 12-dof affine registration to MNI152, as UK Biobank's
    # pipeline (Alfaro-Almagro et al. 2018, NeuroImage 166:400) and the paper prepare
    # them: head size is taken out (version 3 kept it: women 4 % smaller, sd 3 %, which
    # buried the medial temporal marker), and what is left is the registration's own
    # error, small for a robust affine method such as FLIRT (Jenkinson & Smith 2001, Med
    # Image Anal 5:143); we take (assumption) scale sd 1 %, rotation 0.5 degree and
    # translation 0.5 mm per axis
    residual_scale_sd: float = 0.01
    rotation_deg: float = 0.5
    translation_mm: float = 0.5
    intensity_sd: float = 0.1  # global intensity scale sd
    bias_sd: float = 0.05  # bias field: sd of each low-order coefficient
    noise_sd: float = 0.03  # Gaussian noise, in template T1 units (white matter ~0.87)
    # Sites (Chapter 9), off by default: with n_sites = 1 nothing below acts. With more,
    # participant i is scanned at site i % n_sites (so age, sex and diagnosis do not differ
    # between sites); site 0 is the reference scanner, and every other site k is a scanner
    # drawn once from default_rng([SITE_SEED, k]), the same scanner in every cohort. What
    # differs between scanners is what multi-site studies report between vendors, field
    # strengths and sequences (Jovicich et al. 2006, NeuroImage 30:436; Han et al. 2006,
    # NeuroImage 32:180): tissue contrast, the
    # receive coil's intensity non-uniformity, noise, and effective resolution. No study
    # gives these four as numbers in this image model, so every size is an assumption,
    # set once before any model was run on a multi-site cohort:
    n_sites: int = 1
    site_gamma_sd: float = 0.15  # intensity curve v ** gamma after normalisation, log-sd
    site_contrast_sd: float = 0.05  # grey-white contrast shift (white matter ~1), sd
    site_bias_sd: float = 0.1  # a fixed low-order bias field per scanner: coefficient sd
    site_noise_log_sd: float = 0.5  # noise level x exp(N(0, 0.5)): SNR 1.6x higher or lower
    site_fwhm_max_mm: float = 3.0  # extra blur, FWHM uniform in [0, 3] mm (resolution)
