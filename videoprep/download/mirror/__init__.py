"""The CVDF mirror route: plan (part lists, sizes, annotations), safe extraction, and the route itself."""

from videoprep.download.mirror.extract import (
    ExtractResult,
    RejectedMember,
    archive_format,
    member_rejection,
    safe_extract,
)
from videoprep.download.mirror.plan import (
    CVDF_BASE_URL,
    MirrorPlan,
    PartPlan,
    annotations_url,
    fetch_annotations,
    parse_url_list,
    plan_mirror,
    planned_files,
    replacement_url,
    url_list_url,
    write_annotations,
)
from videoprep.download.mirror.route import MirrorJob, MirrorOutcome, clip_hashes, run_mirror

__all__ = [
    "CVDF_BASE_URL", "ExtractResult", "MirrorJob", "MirrorOutcome", "MirrorPlan", "PartPlan", "RejectedMember",
    "annotations_url", "archive_format", "clip_hashes", "fetch_annotations", "member_rejection", "parse_url_list",
    "plan_mirror", "planned_files", "replacement_url", "run_mirror", "safe_extract", "url_list_url",
    "write_annotations",
]
