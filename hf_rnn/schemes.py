"""Chunk label schemes (BIO, IOB1, BIOES, BILOU): parsing, detection, conversion and the CRF's constraints.

Every part of hf_rnn that reads tag prefixes reads them here: the config and the CRF (constraints), the span metric
and the pipeline's entity grouping (`chunks`), and run_tagging (detection and conversion). A chunk is read the way
conlleval and seqeval's default mode read it, whatever the scheme: a chunk ends after an `E-`/`S-` tag or before a
`B-`/`S-`/`O` tag or a change of type, and any other tag opens one when none is open (so a stray `I-X` starts a chunk).
BILOU's `L-`/`U-` are BIOES's `E-`/`S-` under other names.

Pure Python, no torch: shipped inside checkpoints beside the config.
"""

import re
from collections.abc import Iterable, Sequence

SCHEMES = ("BIO", "IOB1", "BIOES", "BILOU")
PREFIXES = {"BIO": "BI", "IOB1": "BI", "BIOES": "BIES", "BILOU": "BILU"}
_ROLES = {"B": "B", "I": "I", "E": "E", "S": "S", "L": "E", "U": "S"}  # prefix -> its BIOES role
# how each scheme writes the roles of a chunk: (single token, first, inside, last)
_WRITE = {"BIO": "BBII", "IOB1": "IIII", "BIOES": "SBIE", "BILOU": "UBIL"}

_MISSPELT = re.compile(r"([BIESLUbieslu])[-_.:](\w.*)")  # misspelt_chunk_tag

Chunk = tuple[str, int, int]  # (type, first position, last position)


def split_tag(tag: str) -> tuple[str, str | None]:
    """'B-PER' -> ('B', 'PER'), 'U-LOC' -> ('U', 'LOC'), 'O' -> ('O', None); a tag that is neither (a POS tag such as
    'NOUN', a bare 'PER') raises a `ValueError`."""
    if tag == "O":
        return "O", None
    prefix, sep, kind = tag.partition("-")
    if not (sep and kind and prefix in _ROLES):
        raise ValueError(f"tag {tag!r} is not 'O' or <prefix>-<TYPE> with a prefix among B, I, E, S, L, U")
    return prefix, kind


def is_chunk_tag(tag: str) -> bool:
    """'O', 'B-PER', 'E-LOC', ... (not 'NOUN')."""
    try:
        split_tag(tag)
    except ValueError:
        return False
    return True


def misspelt_chunk_tag(tag: str) -> str | None:
    """The chunk tag that `tag` misspells ('b-per' -> 'B-per', 'B_PER' -> 'B-PER'), or None: a scheme prefix letter in
    either case followed by '-', '_', '.' or ':' and a type, which is not a chunk tag as written."""
    match = _MISSPELT.fullmatch(tag)
    if match is None or is_chunk_tag(tag):
        return None
    return f"{match[1].upper()}-{match[2]}"


def label_scheme(labels: Iterable[str]) -> str | None:
    """The scheme a label set is written in: None for labels that are not chunk tags (POS tags), "BIOES", "BILOU",
    or "BIO" for B-/I- labels (IOB1 uses the same labels: only sequences tell them apart, see `detect_scheme`).

    A set that mixes chunk tags with others, or BIOES's E/S with BILOU's L/U, is an error: it has no one reading.
    """
    labels = sorted(set(labels))
    chunk_tags = [label for label in labels if is_chunk_tag(label)]
    if not any(label != "O" for label in chunk_tags):
        return None
    others = [label for label in labels if label not in chunk_tags]
    if others:
        raise ValueError(f"labels {others} are not 'O' or <prefix>-<TYPE> like the other labels {chunk_tags}")
    prefixes = {split_tag(label)[0] for label in chunk_tags}
    if prefixes & set("ES") and prefixes & set("LU"):
        raise ValueError(f"labels {chunk_tags} mix BIOES's E-/S- with BILOU's L-/U- prefixes")
    return "BILOU" if prefixes & set("LU") else "BIOES" if prefixes & set("ES") else "BIO"


def detect_scheme(sequences: Iterable[Sequence[str]]) -> str | None:
    """The scheme tag sequences are written in (None for POS-style tags). B-/I- data is IOB1 when more chunks open
    with `I-` (IOB1's way; `B-` only parts two adjacent chunks of one type) than with `B-` (BIO's way)."""
    sequences = [list(tags) for tags in sequences]
    scheme = label_scheme(tag for tags in sequences for tag in tags)
    if scheme != "BIO":
        return scheme
    opened_by = {"B": 0, "I": 0}
    for tags in sequences:
        previous = None
        for tag in tags:
            prefix, kind = split_tag(tag)
            if prefix != "O" and previous != kind:  # a chunk opens: first position, after O or another type
                opened_by[prefix] += 1
            previous = kind
    return "IOB1" if opened_by["I"] > opened_by["B"] else "BIO"


def _read(tag: str) -> tuple[str, str | None]:
    """(role, type) for `chunks`, leniently as conlleval: L/U as E/S, a bare 'PER' (or a POS tag) as inside."""
    if tag in ("O", ""):
        return "O", None
    try:
        prefix, kind = split_tag(tag)
    except ValueError:
        return "I", tag
    return _ROLES[prefix], kind


def chunks(tags: Sequence[str]) -> list[Chunk]:
    """(type, first, last) of every chunk of one tag sequence, in order, read by conlleval's rules (module doc)."""
    found, start, current, previous = [], 0, None, "O"
    for position, tag in enumerate([*tags, "O"]):
        role, kind = _read(tag)
        if current is not None and (previous in "ES" or role in "BSO" or kind != current):
            found.append((current, start, position - 1))
            current = None
        if role != "O" and current is None:
            start, current = position, kind
        previous = role
    return found


def convert(tags: Sequence[str], scheme: str) -> list[str]:
    """The chunks of `tags` (as `chunks` reads them, in any scheme) written in `scheme`.

    Exact both ways for valid sequences (BIO -> BIOES -> BIO gives the input back); an invalid one (an `I-X` after
    `O` in BIO) comes out repaired the way conlleval and seqeval score it. A tag that is not a chunk tag (a POS tag
    such as 'NOUN', which `chunks` reads leniently as a one-word chunk) raises a `ValueError` naming its position: it
    has no chunk reading to write in another scheme.
    """
    single, first, inside, last = _WRITE[_check_scheme(scheme)]
    for position, tag in enumerate(tags):
        if not is_chunk_tag(tag):
            raise ValueError(f"tag {tag!r} at position {position} is not a chunk tag ('O' or <prefix>-<TYPE>)")
    written = ["O"] * len(tags)
    end_of_previous = {}  # type -> last position of its latest chunk
    for kind, start, end in chunks(tags):
        if start == end:
            roles = [single]
        else:
            roles = [first, *inside * (end - start - 1), last]
        if scheme == "IOB1" and end_of_previous.get(kind) == start - 1:  # parts two adjacent chunks of one type
            roles[0] = "B"
        written[start : end + 1] = [f"{role}-{kind}" for role in roles]
        end_of_previous[kind] = end
    return written


def scheme_constraints(labels: Sequence[str], scheme: str) -> tuple[list[list[bool]], list[bool], list[bool]]:
    """The moves a valid `scheme` sequence can make over `labels`: allowed transitions (C x C, `[i][j]`: label i
    followed by label j), allowed first labels and allowed last labels, for the CRF.

    BIO (IOB2): `I-X` only after `B-X`/`I-X`, never first. IOB1: `B-X` only after `B-X`/`I-X` (it parts two adjacent
    chunks of one type), never first. BIOES/BILOU: after `B-X`/`I-X` only `I-X`/`E-X`; after anything else only `B-*`,
    `S-*` or `O`; never start on `I`/`E`, never end on `B`/`I`.
    """
    allowed_prefixes = PREFIXES[_check_scheme(scheme)]
    tags = []
    for label in labels:
        prefix, kind = split_tag(label) if is_chunk_tag(label) else (None, None)
        if prefix != "O" and (prefix is None or prefix not in allowed_prefixes):
            raise ValueError(f"label {label!r} is not 'O' or {'/'.join(allowed_prefixes)}-<TYPE> (scheme {scheme})")
        tags.append((_ROLES.get(prefix, "O"), kind))

    def allowed(previous: tuple[str, str | None], current: tuple[str, str | None]) -> bool:
        (p, p_kind), (c, c_kind) = previous, current
        same_chunk = p in "BI" and p_kind == c_kind
        if scheme == "BIO":
            return c != "I" or same_chunk
        if scheme == "IOB1":
            return c != "B" or same_chunk
        if p in "BI":  # BIOES/BILOU: inside a chunk, only continue or close it
            return c in "IE" and same_chunk
        return c in "BSO"

    transitions = [[allowed(p, c) for c in tags] for p in tags]
    if scheme in ("BIO", "IOB1"):
        start = [role != ("I" if scheme == "BIO" else "B") for role, _ in tags]
        end = [True] * len(tags)
    else:
        start = [role in "BSO" for role, _ in tags]
        end = [role in "ESO" for role, _ in tags]
    return transitions, start, end


def segment_scheme(labels: Sequence[str]) -> str | None:
    """The scheme a model that decodes whole chunks (the semi-Markov CRF) writes them in: the labels' own (BIO,
    BIOES or BILOU; IOB1's B-/I- labels are read as BIO's), or None for labels that are not chunk tags (no chunks:
    one word per segment). Chunk labels must hold `O`, and for every type the labels of at least one chunk length (a
    type with `B-X` but no `I-X` in BIO has one-word chunks only); else a `ValueError` naming what is missing."""
    scheme = label_scheme(labels)
    if scheme is None:
        return None
    if "O" not in labels:
        raise ValueError(f"labels {list(labels)} are chunk tags without an 'O'")
    single, first, _, last = _WRITE[scheme]
    for kind in dict.fromkeys(split_tag(label)[1] for label in labels if label != "O"):
        if f"{single}-{kind}" not in labels and not {f"{first}-{kind}", f"{last}-{kind}"} <= set(labels):
            raise ValueError(
                f"labels {list(labels)} cannot write a {kind!r} chunk in {scheme}: they lack {single}-{kind} "
                f"(one word) and {first}-{kind} with {last}-{kind} (longer)"
            )
    return scheme


def written_roles(scheme: str) -> str:
    """The prefixes `scheme` writes a chunk's words with: (single word, first, inside, last)."""
    return _WRITE[_check_scheme(scheme)]


def _check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    return scheme


__all__ = [
    "SCHEMES",
    "chunks",
    "convert",
    "detect_scheme",
    "is_chunk_tag",
    "label_scheme",
    "misspelt_chunk_tag",
    "scheme_constraints",
    "segment_scheme",
    "split_tag",
    "written_roles",
]
