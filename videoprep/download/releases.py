"""The Kinetics releases `videoprep download` knows: where each lives on the CVDF mirror and what it holds.

Standard library only (the CLI reads the names before importing anything heavy).
Every release has the same mirror layout under its own folder:
    {base}/{split}/{tag}_{split}_path.txt   one part URL per line
    {base}/annotations/{split}.csv          the split's annotation CSV
    {base}/{replacement}                    Kinetics-400 only: re-encoded copies of corrupt clips
"""

from __future__ import annotations

from dataclasses import dataclass

CVDF_ROOT = "https://s3.amazonaws.com/kinetics"


@dataclass(frozen=True)
class Release:
    """One Kinetics release: its CLI name, its folder on the mirror, its file tag and class count."""

    name: str
    mirror_dir: str
    tag: str
    num_classes: int
    replacement: str | None = None  # archive of fixed copies of corrupt clips, when the release has one
    # Measured sizes (GB) of the mirror's parts per split, for the disk-space check in the docs.
    approx_gb: tuple[tuple[str, int], ...] = ()

    @property
    def base_url(self) -> str:
        """The release's folder on the CVDF mirror."""
        return f"{CVDF_ROOT}/{self.mirror_dir}"

    def list_name(self, split: str) -> str:
        """File name of a split's part list, e.g. `k700_2020_train_path.txt`."""
        return f"{self.tag}_{split}_path.txt"


RELEASES: dict[str, Release] = {r.name: r for r in (
    Release("kinetics400", "400", "k400", 400, replacement="replacement_for_corrupted_k400.tgz"),
    Release("kinetics600", "600", "k600", 600),
    Release("kinetics700-2020", "700_2020", "k700_2020", 700),
)}


def release(name: str) -> Release:
    """The release called `name`; a ValueError naming the known ones otherwise."""
    try:
        return RELEASES[name]
    except KeyError:
        raise ValueError(f"dataset {name!r} is not supported; supported: {', '.join(RELEASES)}") from None
