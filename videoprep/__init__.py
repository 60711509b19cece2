"""videoprep: get Kinetics onto disk, check it, transcode and index it for the BAT runners."""

__version__ = "0.1.0"
