"""`videoprep validate`: find the videos a trainer would choke on, before training does.

- `reasons`: what can be wrong (the taxonomy, worst first) and its classes;
- `containers`: the integrity check every stage shares (cut short or damaged, from the container's structure);
- `decodecheck`: decoding all of a video, or the spans to a few frames;
- `check`: the check of one video (worker side);
- `run`: the stage run, the report and the quarantine.
"""

from videoprep.validate.check import VideoCheck, check_video, is_420
from videoprep.validate.containers import Integrity, check_integrity, container_findings, require_intact
from videoprep.validate.decodecheck import SpanDecoder, decode_all_findings, quick_findings
from videoprep.validate.reasons import (
    FIXABLE,
    REASONS,
    UNUSABLE,
    Finding,
    FindingClass,
    Reason,
    finding_class,
    parse_reasons,
)
from videoprep.validate.run import (
    REPORT_COLUMNS,
    REPORT_FORMATS,
    BadVideo,
    ValidateConfig,
    ValidateResult,
    classes_without_usable,
    run_validate,
    write_report,
)

__all__ = [
    "FIXABLE",
    "REASONS",
    "REPORT_COLUMNS",
    "REPORT_FORMATS",
    "UNUSABLE",
    "BadVideo",
    "Finding",
    "FindingClass",
    "Integrity",
    "Reason",
    "SpanDecoder",
    "ValidateConfig",
    "ValidateResult",
    "VideoCheck",
    "check_integrity",
    "check_video",
    "classes_without_usable",
    "container_findings",
    "decode_all_findings",
    "finding_class",
    "is_420",
    "parse_reasons",
    "quick_findings",
    "require_intact",
    "run_validate",
    "write_report",
]
