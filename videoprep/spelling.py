"""One spelling per concept: a long option's other spelling (kebab or snake case) means the same option.

The official BAT flags are snake_case (`--seq_length`), ours kebab-case (`--save-iter-freq`); users
mix them. Rather than declaring every alias, a command line is rewritten to each option's canonical
name before parsing, so `--help` keeps showing one name per option. Standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def _key(option: str) -> str:
    """What two spellings of one long option share: the name with `_` read as `-`."""
    return option.replace("_", "-")


def spelling_table(options: Iterable[str]) -> dict[str, str]:
    """Map each long option's key to its canonical spelling; keys two options share are left out."""
    table: dict[str, str] = {}
    clashes: set[str] = set()
    for option in options:
        if not option.startswith("--") or len(option) < 3:
            continue
        key = _key(option)
        if key in table and table[key] != option:
            clashes.add(key)
        table[key] = option
    return {key: option for key, option in table.items() if key not in clashes}


def canonical_spellings(argv: Sequence[str], table: dict[str, str]) -> list[str]:
    """`argv` with every long option written in its other spelling replaced by the canonical one.

    Tokens after a bare `--`, short options, values and unknown options are left as they are, so the
    parser still reports a misspelt option by the name the user typed.
    """
    out: list[str] = []
    for i, token in enumerate(argv):
        if token == "--":
            return out + list(argv[i:])
        if token.startswith("--"):
            name, eq, value = token.partition("=")
            canonical = table.get(_key(name))
            if canonical is not None:
                token = canonical + eq + value
        out.append(token)
    return out
