"""PLAsTiCC survey facts in one place: passbands, classes, protocols, column names.

References: PLAsTiCC Team et al. 2018 (arXiv:1810.00001); Kessler et al. 2019 (arXiv:1903.11756).
"""

from __future__ import annotations

# LSST passbands 0-5.
PASSBANDS: tuple[str, ...] = ("u", "g", "r", "i", "z", "y")
N_PASSBANDS = len(PASSBANDS)

# Flux is FLUXCAL (zero point 27.5); survey MJD span.
FLUX_ZEROPOINT = 27.5
MJD_MIN, MJD_MAX = 59580.0, 60675.0

# What a valid input value can be; an object with a value outside is rejected with the reason.
# Observations more than this many days outside the survey span are not PLAsTiCC's (e.g. a JD
# given as MJD, a time in seconds, a zero).
MJD_MARGIN_DAYS = 365.0
# The smallest flux_err (FLUXCAL) accepted: the training set's is 0.46. A smaller one makes the
# inverse-variance weight 1/flux_err**2 overflow (1e-300 gives inf, then NaN in the grid).
FLUX_ERR_FLOOR = 1e-3
# Light-curve values must fit in float32, the type of the tensors (3.4e38).
FLOAT32_MAX = 3.4028234663852886e38
# Physically possible ranges of the metadata (generous; the training set's own extremes in the
# comments). NaN is "missing" (the unblinded -9) and passes; inf or a value outside rejects the
# object.
METADATA_RANGES: dict[str, tuple[float, float]] = {
    "ra": (-180.0, 360.0),  # degrees (0 to 360, or -180 to 180 as some catalogues write it)
    "decl": (-90.0, 90.0),  # degrees
    "ddf": (0.0, 1.0),  # a flag
    "hostgal_specz": (0.0, 10.0),  # training set: 0 to 3.4
    "hostgal_photoz": (0.0, 10.0),  # 0 to 3.0
    "hostgal_photoz_err": (0.0, 10.0),  # 0 to 1.7
    "distmod": (0.0, 60.0),  # 31 to 47 where given (z = 10 gives 51.6)
    "mwebv": (0.0, 20.0),  # 0.003 to 2.7 (Milky Way E(B-V), magnitudes)
}

CLASS_NAMES: dict[int, str] = {
    6: "microlens-single",
    15: "TDE",
    16: "EB",
    42: "SN II",
    52: "SN Iax",
    53: "Mira",
    62: "SN Ibc",
    64: "kilonova",
    65: "M-dwarf",
    67: "SN Ia-91bg",
    88: "AGN",
    90: "SN Ia",
    92: "RR Lyrae",
    95: "SLSN-I",
    # Test-only classes (class 99 on Kaggle); not obtainable here.
    991: "microlens-binary",
    992: "ILOT",
    993: "CaRT",
    994: "PISN",
    995: "microlens-string",
}
TRAINING_CLASSES: tuple[int, ...] = (6, 15, 16, 42, 52, 53, 62, 64, 65, 67, 88, 90, 92, 95)
GALACTIC_CLASSES: tuple[int, ...] = (6, 16, 53, 65, 92)
EXTRAGALACTIC_CLASSES: tuple[int, ...] = tuple(
    c for c in TRAINING_CLASSES if c not in GALACTIC_CLASSES
)
UNKNOWN_TARGET = -1  # objects without a label (e.g. the Kaggle test set)

# Anomaly protocols: (known classes, anomaly classes). Classes in neither are left out.
PROTOCOLS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    # Rare classes held out; the other ten are known.
    "rare": (
        tuple(c for c in TRAINING_CLASSES if c not in (6, 53, 64, 95)),
        (6, 53, 64, 95),
    ),
    # After Villar et al. 2021: normal supernovae known, other extragalactic classes anomalous.
    "sn": ((90, 42, 62), (15, 52, 64, 67, 88, 95)),
}

# Canonical light-curve columns, and the names each input format uses for them.
LIGHTCURVE_COLUMNS: tuple[str, ...] = (
    "object_id",
    "mjd",
    "passband",
    "flux",
    "flux_err",
    "detected",
)
LIGHTCURVE_ALIASES: dict[str, str] = {"detected_bool": "detected"}

# Metadata the model may use (what the Kaggle metadata offers). Truth columns never enter a model.
METADATA_COLUMNS: tuple[str, ...] = (
    "object_id",
    "ra",
    "decl",
    "ddf",
    "hostgal_specz",
    "hostgal_photoz",
    "hostgal_photoz_err",
    "distmod",
    "mwebv",
)
METADATA_ALIASES: dict[str, str] = {"ddf_bool": "ddf"}
# Label columns, in order of preference: Kaggle training files say `target`, unblinded test files
# only `true_target`. Labels are for evaluation only.
LABEL_COLUMNS: tuple[str, ...] = ("target", "true_target")
TRUTH_PREFIXES: tuple[str, ...] = ("true_", "tflux_")
MISSING_VALUE = -9.0  # the unblinded release's marker for a missing value


def class_name(target: int) -> str:
    """`SN Ia` for 90, `unlabelled` for -1 (no label given: not a guess, not PLAsTiCC's
    unknown classes), the number itself for a class without a name."""
    return CLASS_NAMES.get(int(target), "unlabelled" if target < 0 else str(target))
