"""cgroup v1/v2: the mapping table (knobs) and the hierarchy that applies it in a guest."""

from .hierarchy import (
    CgroupError,
    Hierarchy,
    Reading,
    Sample,
    Sampler,
    V1Hierarchy,
    V2Hierarchy,
    WriteResult,
    make_hierarchy,
    parse_status,
)
from .knobs import (
    FEATURES,
    KNOBS,
    METRICS,
    KnobUnsupported,
    MetricUnsupported,
    UnknownName,
    Unsupported,
    metric_files,
    parse_metric,
    writes_for,
)

__all__ = [
    "FEATURES", "KNOBS", "METRICS", "CgroupError", "Hierarchy", "KnobUnsupported",
    "MetricUnsupported", "Reading", "Sample", "Sampler", "UnknownName", "Unsupported",
    "V1Hierarchy", "V2Hierarchy", "WriteResult", "make_hierarchy", "metric_files",
    "parse_metric", "parse_status", "writes_for",
]
