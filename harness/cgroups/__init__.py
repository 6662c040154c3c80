"""cgroup v1/v2: the mapping table (knobs), the guest-shell protocol (guest) and the hierarchy
that applies the table in a guest through it (hierarchy)."""

from .guest import (
    CgroupError,
    Sample,
    Sampler,
    WriteResult,
    parse_status,
)
from .hierarchy import (
    Hierarchy,
    Reading,
    V1Hierarchy,
    V2Hierarchy,
    make_hierarchy,
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
