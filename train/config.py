"""Command-line settings of the BAT runners: the official flags and defaults, plus ours.

`python -m train.main` and `python -m train.test_models` accept every flag of the
official `main.py` / `test_models.py` with the same defaults, so the README commands
of the official repository work unchanged. Flags both runners take are defined once
(`_add_shared_flags`, `RunnerConfig`); each runner adds its own. `PRESETS` maps each
official script to its flags for `videoprep train --preset` / `videoprep test --preset`.
Every flag's help ends with its default; `flag_rows` hands the same rows to the click --help.
"""
# size: the official flags of both runners (a compatibility contract) are defined here in one place

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

from videoprep.spelling import canonical_spellings, spelling_table

Backend = Literal["pyav", "lintel", "frames", "torchcodec", "dali"]
BACKENDS: tuple[str, ...] = ("pyav", "lintel", "frames", "torchcodec", "dali")
# --read_mode of the official code -> our loader backend.
READ_MODE_BACKENDS: dict[str, str] = {"img": "frames", "video": "lintel"}
AMP_MODES: tuple[str, ...] = ("off", "bf16", "fp16")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
NORMS: tuple[str, ...] = ("official", "imagenet")

# Flags of the official scripts/ (all: --read_mode video, 8x8 clips; training: lr 0.01, steps 40 80,
# 100 epochs, batch 64, dropout 0.5; testing: 10 segments x 3 crops). Their -j 48 / -j 16 and
# --resume PRETRAINED --soft_resume stay the user's (machine- and file-specific).
_MODEL_FLAGS: dict[str, list[str]] = {
    "c2d": ["--arch", "c2d_resnet50"],
    "c2d_nl": ["--arch", "c2d_resnet50", "--nonlocal_mod", "2", "--nltype", "nl3d"],
    "c2d_bat": ["--arch", "c2d_resnet50", "--nonlocal_mod", "2", "--nltype", "bat", "--k", "8"],
    "c2d_3dbat": ["--arch", "c2d_resnet50", "--nonlocal_mod", "2", "--nltype", "bat", "--k", "8", "--tk", "4"],
    "i3d": ["--arch", "i3d_resnet50"],
    "i3d_nl": ["--arch", "i3d_resnet50", "--nonlocal_mod", "2", "--nltype", "nl3d"],
    "i3d_bat": ["--arch", "i3d_resnet50", "--nonlocal_mod", "2", "--nltype", "bat", "--k", "8"],
}
_CLIP_FLAGS = ["--read_mode", "video", "--seq_length", "8", "--sample_rate", "8"]
_TRAIN_FLAGS = ["--num_segments", "1", "--lr", "0.01", "--lr_steps", "40", "80", "--epochs", "100",
                "-b", "64", "--dropout", "0.5"]
_TEST_FLAGS = ["--test_segments", "10", "--test_crops", "3"]

PRESET_NAMES: tuple[str, ...] = tuple(_MODEL_FLAGS)
PRESETS: dict[str, list[str]] = {name: flags + _CLIP_FLAGS + _TRAIN_FLAGS for name, flags in _MODEL_FLAGS.items()}
TEST_PRESETS: dict[str, list[str]] = {name: flags + _CLIP_FLAGS + _TEST_FLAGS for name, flags in _MODEL_FLAGS.items()}


# What a checkpoint records about its model and its clips (names of RunnerConfig fields); `test` and
# `train --resume` build the model from these, and a flag that contradicts one is an error.
MODEL_FIELDS: tuple[str, ...] = ("arch", "num_classes", "nonlocal_mod", "nltype", "k", "tk", "ts")
CLIP_FIELDS: tuple[str, ...] = ("seq_length", "sample_rate", "norm")


@dataclass(kw_only=True)
class RunnerConfig:
    """Settings both runners share: data, clip and model flags (official names, training defaults), then ours."""

    root_path: str = ""
    read_mode: str = "img"
    seq_length: int = 8
    sample_rate: int = 8
    workers: int = 4
    arch: str = "c2d_resnet50"
    num_classes: int = 400
    nonlocal_mod: list[int] = field(default_factory=lambda: [1000])
    nltype: str = "nl3d"
    k: int = 4
    tk: int = 0
    ts: int = 4
    print_freq: int = 20
    # ours
    backend: str | None = None
    device: str = "auto"
    dist_backend: str = "auto"
    amp: str = "off"
    channels_last: bool = False
    norm: str = "official"
    max_bad_fraction: float = 0.01
    trusted_legacy_checkpoint: bool = False
    non_strict: bool = False
    progress: str = "auto"
    shards: str | None = None  # stream WebDataset shards (`videoprep shard`) instead of the list
    shards_index: str | None = None  # their {split}.json when it is not beside them (pipe: commands)
    # Fields set on the command line (a preset's flags included): a checkpoint's recorded model may not
    # contradict them, and nothing is inferred for them. Not a setting: left out of comparisons and records.
    given: frozenset[str] = field(default_factory=frozenset, compare=False, repr=False)
    # The --preset in front, and the given fields only its flags set (errors then name --preset). Not settings.
    preset: str | None = field(default=None, compare=False, repr=False)
    preset_fields: frozenset[str] = field(default_factory=frozenset, compare=False, repr=False)

    @property
    def loader_backend(self) -> str:
        """--backend when given, else the backend the official --read_mode implies."""
        return self.backend or READ_MODE_BACKENDS[self.read_mode]

    @property
    def bgr(self) -> bool:
        """Official img mode: JPEG frames fed as BGR before the Caffe means (video mode, and every video backend, is RGB)."""
        return self.norm == "official" and self.read_mode == "img" and self.loader_backend == "frames"

    def record(self) -> dict[str, Any]:
        """Every setting as plain values (params.json, the checkpoint's 'config')."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("given", "preset", "preset_fields")}

    def model_record(self) -> dict[str, Any]:
        """What builds the model (MODEL_FIELDS), as a checkpoint records it."""
        return {name: getattr(self, name) for name in MODEL_FIELDS}

    def clip_record(self) -> dict[str, Any]:
        """What a clip fed to the model looks like (CLIP_FIELDS and the channel order), as a checkpoint records it."""
        return {**{name: getattr(self, name) for name in CLIP_FIELDS}, "channels": "bgr" if self.bgr else "rgb"}

    def model_kwargs(self) -> dict[str, Any]:
        """build_model options from the flags (one --nonlocal_mod value applies to layer2 and layer3)."""
        mod = self.nonlocal_mod[0] if len(self.nonlocal_mod) == 1 else tuple(self.nonlocal_mod)
        return {"num_classes": self.num_classes, "nonlocal_mod": mod, "nltype": self.nltype, "k": self.k,
                "tk": self.tk, "ts": self.ts}


@dataclass(kw_only=True)
class TrainConfig(RunnerConfig):
    """Every setting of a training run (official names; ours after `# ours`)."""

    train_list: str
    val_list: str
    log_dir: str = "log"
    num_segments: int = 1
    dropout: float = 0.5
    nl_drop: float = 0.2
    freeze_bn: bool = False
    use_affine: bool = False
    epochs: int = 100
    batch_size: int = 64
    lr: float = 0.01
    lr_steps: list[float] = field(default_factory=lambda: [20.0, 40.0])
    warmup_epochs: int = 0
    coslr: bool = False
    momentum: float = 0.9
    weight_decay: float = 1e-4
    clip_gradient: float | None = 20.0
    nesterov: bool = False
    eval_freq: int = 5
    save_freq: int = 5
    save_vg: bool = False
    resume: str = ""
    soft_resume: bool = False
    evaluate: bool = False
    snapshot_dir: str = "checkpoints"
    start_epoch: int = 0
    seed: int = -1
    # ours
    crop_size: int = 224
    scale_size: int = 256
    deterministic: bool = False
    save_iter_freq: int = 0
    num_clips: int = 1
    val_shards: str | None = None

    def model_kwargs(self) -> dict[str, Any]:
        """build_model options, the training-only dropout rates included."""
        return {**super().model_kwargs(), "nl_drop": self.nl_drop, "dropout": self.dropout}


@dataclass(kw_only=True)
class TestConfig(RunnerConfig):
    """Every setting of a test run (official names and defaults; ours after `# ours`)."""

    test_list: str
    weights: str
    tsm: bool = False
    img_size: int = 224
    save_scores: str | None = None
    seq_length: int = 32  # the official test defaults differ from training's
    sample_rate: int = 2
    test_segments: int = 1
    workers: int = 8
    test_crops: int = 10
    div: int = 1
    # ours
    batch_size: int = 1
    scale_size: int | None = None

    @property
    def scale(self) -> int:
        """Short-side resize before test crops; the official rule is img_size * 256 / 224."""
        return self.scale_size if self.scale_size is not None else int(self.img_size / 224 * 256)


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number (>= 1)") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return number


def _fraction(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number in [0, 1]") from None
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} must be in [0, 1]")
    return number


def _add_shared_flags(p: argparse.ArgumentParser, *, seq_length: int, sample_rate: int,
                      workers: int) -> argparse._ArgumentGroup:
    """Flags of both official scripts (clip defaults and -j differ between them), then our shared additions.

    Returns the "videoprep additions" group so that each runner can add its own there.
    """
    p.add_argument("--root_path", default="", type=str)
    p.add_argument("--read_mode", default="img", choices=sorted(READ_MODE_BACKENDS))
    p.add_argument("--seq_length", default=seq_length, type=_positive, help="frames per clip")
    p.add_argument("--sample_rate", default=sample_rate, type=_positive, help="take every n-th frame")
    p.add_argument("-j", "--workers", default=workers, type=int, help="data loading processes")
    p.add_argument("--arch", type=str, default="c2d_resnet50",
                   help="c2d_resnet50, i3d_resnet50, i3d_resnet18 (and the 34/101 variants)")
    p.add_argument("--num_classes", default=400, type=_positive,
                   help="classifier size; unset: the line count of classes.txt beside the list if there is one")
    p.add_argument("--nonlocal_mod", default=[1000], type=int, nargs="+",
                   help="insert a non-local/BAT block after every m-th block of layer2/layer3 (1000 = none)")
    p.add_argument("--nltype", default="nl3d", type=str, help="nl3d (alias nl) or bat")
    p.add_argument("--k", default=4, type=int, help="BAT: number of attention groups")
    p.add_argument("--tk", default=0, type=int, help="BAT: temporal groups (> 0 is 3D-BAT)")
    p.add_argument("--ts", default=4, type=int, help="BAT: temporal size of the temporal transform")
    p.add_argument("--print-freq", "-p", default=20, type=_positive)
    ours = p.add_argument_group("videoprep additions")
    ours.add_argument("--backend", choices=BACKENDS, default=None,
                      help="loader backend; overrides --read_mode (img -> frames, video -> lintel); "
                      "unset: from the list (video files -> pyav, frame folders -> frames)")
    ours.add_argument("--device", choices=DEVICES, default="auto", help="auto picks cuda when available")
    ours.add_argument("--dist-backend", choices=("auto", "nccl", "gloo"), default="auto",
                      help="torch.distributed backend under torchrun (auto: nccl on cuda, gloo on cpu)")
    ours.add_argument("--amp", choices=AMP_MODES, default="off",
                      help="autocast dtype; fp16 uses a gradient scaler on cuda")
    ours.add_argument("--channels-last", action="store_true", help="channels_last_3d memory format")
    ours.add_argument("--norm", choices=NORMS, default="official",
                      help="official: Caffe BGR means subtracted from RGB (video mode; released models), "
                      "channels flipped to BGR first for --read_mode img on frames; imagenet: mean/std")
    ours.add_argument("--max-bad-fraction", type=_fraction, default=0.01,
                      help="stop when more than this fraction of videos fail to decode")
    ours.add_argument("--trusted-legacy-checkpoint", action="store_true",
                      help="allow full unpickling of old checkpoints (only for files you trust)")
    ours.add_argument("--non-strict", action="store_true",
                      help="load the weights that fit and report the rest (default: every key must match)")
    ours.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                      help="per-epoch progress bar on stderr (auto: when stderr is a terminal)")
    ours.add_argument("--shards", default=None, metavar="PATTERN",
                      help="read WebDataset shards of `videoprep shard` instead of the list: DIR/{split}.json, "
                      "or a brace pattern of paths, http(s):// URLs or pipe: commands; --num_classes from the "
                      "index beside them")
    ours.add_argument("--shards-index", default=None, metavar="INDEX",
                      help="the {split}.json of --shards when it is not beside them (pipe: commands)")
    return ours


class _Parser(argparse.ArgumentParser):
    """argparse that takes either spelling of every long flag (`--seq_length` or `--seq-length`), and says an
    error in one line naming the flag, without the usage dump."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        table = spelling_table(name for action in self._actions for name in action.option_strings)
        argv = sys.argv[1:] if args is None else args
        return super().parse_known_args(canonical_spellings(list(argv), table), namespace)

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (--help lists every flag)\n")


def _parser(module: str, description: str, *positional: str) -> argparse.ArgumentParser:
    p = _Parser(prog=f"python -m {module}", description=description)
    for name in positional:
        p.add_argument(name, type=str, nargs="?", default="")  # required unless --shards (_check_positional)
    return p


def _check_positional(p: argparse.ArgumentParser, args: argparse.Namespace, names: Sequence[str],
                      *, optional: Sequence[str] = ()) -> argparse.Namespace:
    """The lists are required unless --shards stands for them (argparse's own message and exit 2).

    With --shards the positionals left are the others, in order (`test --shards P WEIGHTS`).
    """
    if args.shards:
        given = [getattr(args, n) for n in names if getattr(args, n)]
        rest = [n for n in names if n not in optional]
        if len(given) > len(rest):
            p.error(f"--shards replaces {', '.join(optional)}: give the shards or the list, not both")
        for name in names:
            setattr(args, name, "")
        for name, value in zip(rest, given, strict=False):
            setattr(args, name, value)
    missing = [n for n in names if not getattr(args, n) and not (n in optional and args.shards)]
    if missing:
        p.error(f"the following arguments are required: {', '.join(missing)}")
    return args


def build_train_parser() -> argparse.ArgumentParser:
    """The parser of `python -m train.main`: official flags and defaults first, ours grouped after."""
    p = _parser("train.main", "Train a BAT video model (flags of the official main.py, plus DDP/AMP additions).",
                "train_list", "val_list")
    p.add_argument("--log_dir", default="log", type=str)
    p.add_argument("--num_segments", default=1, type=_positive)
    ours = _add_shared_flags(p, seq_length=8, sample_rate=8, workers=4)
    p.add_argument("--dropout", "--do", default=0.5, type=float)
    p.add_argument("--nl_drop", default=0.2, type=float)
    p.add_argument("--freeze_bn", action="store_true", help="BN layers in eval mode with frozen affine params")
    p.add_argument("--use_affine", action="store_true", help="BN without running statistics")
    p.add_argument("--epochs", default=100, type=int)
    p.add_argument("-b", "--batch-size", default=64, type=_positive, help="total over all processes")
    p.add_argument("--lr", "--learning-rate", default=0.01, type=float)
    p.add_argument("--lr_steps", default=[20.0, 40.0], type=float, nargs="+", help="epochs to decay lr by 10")
    p.add_argument("--warmup_epochs", default=0, type=int)
    p.add_argument("--coslr", action="store_true")
    p.add_argument("--momentum", default=0.9, type=float)
    p.add_argument("--weight-decay", "--wd", default=1e-4, type=float)
    p.add_argument("--clip-gradient", "--gd", default=20.0, type=float, help="max gradient norm (<= 0: off)")
    p.add_argument("--nesterov", action="store_true")
    p.add_argument("--eval-freq", "-ef", default=5, type=_positive)
    p.add_argument("--save-freq", "-sf", default=5, type=_positive)
    p.add_argument("--save-vg", action="store_true",
                   help="at each printed step also record every parameter's mean |value| and |grad| (metrics, TensorBoard)")
    p.add_argument("--resume", default="", type=str, help="checkpoint to continue, or weights to start from")
    p.add_argument("--soft_resume", action="store_true", help="non-strict load; epoch and best restart at 0")
    p.add_argument("-e", "--evaluate", action="store_true", help="only evaluate on the validation list")
    p.add_argument("--snapshot_dir", type=str, default="checkpoints")
    p.add_argument("--start-epoch", default=0, type=int)
    p.add_argument("--seed", default=-1, type=int, help="random seed (< 0: draw one and print it)")
    ours.add_argument("--crop-size", type=_positive, default=224, help="train/val crop (official: 224)")
    ours.add_argument("--scale-size", type=_positive, default=256, help="val short-side resize (official: 256)")
    ours.add_argument("--deterministic", action="store_true",
                      help="torch deterministic algorithms (bit-exact resume on GPU; slower)")
    ours.add_argument("--save-iter-freq", type=int, default=0,
                      help="also checkpoint every N iterations inside an epoch (0: off); --resume continues there")
    ours.add_argument("--num_clips", type=_positive, default=1,
                      help="K independent clips per training video, decoded in one pass (repeated augmentation); "
                      "a step then holds K x batch-size clips")
    ours.add_argument("--val-shards", default=None, metavar="PATTERN",
                      help="validation shards with --shards (unset: val.json beside the training shards)")
    return _show_defaults(p)


def build_test_parser() -> argparse.ArgumentParser:
    """The parser of `python -m train.test_models`: official flags and defaults, plus ours."""
    p = _parser("train.test_models", "Video-level testing of a BAT model: segments x crops views, mean of raw logits.",
                "test_list", "weights")
    ours = _add_shared_flags(p, seq_length=32, sample_rate=2, workers=8)
    p.add_argument("--tsm", action="store_true", help="official flag; TSM is not part of the released models")
    p.add_argument("--img_size", default=224, type=_positive, help="crop size (scale = img_size * 256 / 224)")
    p.add_argument("--save_scores", type=str, default=None, help="write per-view logits and labels to this .npz")
    p.add_argument("--test_segments", default=1, type=_positive)
    p.add_argument("--test_crops", type=int, default=10, choices=(1, 3, 10))
    p.add_argument("--div", default=1, type=_positive, help="split each forward batch of views into this many parts")
    ours.add_argument("-b", "--batch-size", type=_positive, default=1, help="videos per batch (official: 1)")
    ours.add_argument("--scale-size", type=_positive, default=None, help="override the test short-side resize")
    return _show_defaults(p)


def _default_text(action: argparse.Action) -> str:
    value = action.default
    if isinstance(action, argparse._StoreTrueAction):
        return "off"
    if value is None:
        return "none"
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return repr(value) if value == "" else str(value)


def _show_defaults(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Append `[default: X]` to every flag's help, so that `--help` of both front ends shows each default."""
    for action in p._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            text = (action.help or "").replace("%", "%%")
            action.help = f"{text} [default: {_default_text(action)}]".strip()
    return p


def flag_rows(parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    """(flags with metavar, help with default) for every option of a runner parser: the click --help reuses it."""
    rows = []
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        names = ", ".join(action.option_strings)
        if action.nargs == 0:
            rows.append((names, (action.help or "").replace("%%", "%")))
            continue
        metavar = action.metavar or ("{" + ",".join(map(str, action.choices)) + "}" if action.choices
                                     else action.dest.upper())
        if action.nargs == "+":
            metavar += " ..."
        rows.append((f"{names} {metavar}", (action.help or "").replace("%%", "%")))
    return rows


def _given(build: Callable[[], argparse.ArgumentParser], argv: Sequence[str] | None) -> frozenset[str]:
    """Config fields the command line sets (parsed once more with every default suppressed)."""
    probe = build()
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    return frozenset(vars(probe.parse_args(argv)))


def _to_config(cls: type, namespace: argparse.Namespace, given: frozenset[str]):
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{key: value for key, value in vars(namespace).items() if key in names}, given=given & names)


def parse_train_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """Parse `python -m train.main` arguments into a TrainConfig."""
    p = build_train_parser()
    args = _check_positional(p, p.parse_args(argv), ("train_list", "val_list"), optional=("train_list", "val_list"))
    cfg = _to_config(TrainConfig, args, _given(build_train_parser, argv))
    if cfg.clip_gradient is not None and cfg.clip_gradient <= 0:
        cfg.clip_gradient = None
    return cfg


def parse_test_args(argv: Sequence[str] | None = None) -> TestConfig:
    """Parse `python -m train.test_models` arguments into a TestConfig."""
    p = build_test_parser()
    args = _check_positional(p, p.parse_args(argv), ("test_list", "weights"), optional=("test_list",))
    return _to_config(TestConfig, args, _given(build_test_parser, argv))


def parse_runner_args(args: Sequence[str], *, preset: str | None, test: bool) -> RunnerConfig:
    """The preset's flags, then the user's (the last one of a flag wins); records what only the preset set."""
    build, parse = (build_test_parser, parse_test_args) if test else (build_train_parser, parse_train_args)
    flags = preset_argv(preset, test=test) if preset else []
    cfg = parse(flags + list(args))
    if preset:
        cfg.preset = preset
        cfg.preset_fields = _given(build, [*flags, "LIST", "OTHER"]) - _given(build, args)
    return cfg


def preset_argv(preset: str, *, test: bool = False) -> list[str]:
    """Flags of one official script; a later flag of the user's overrides it."""
    table = TEST_PRESETS if test else PRESETS
    if preset not in table:
        raise ValueError(f"preset {preset!r} is not one of {', '.join(table)}")
    return list(table[preset])
