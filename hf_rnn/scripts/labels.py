"""A tagging dataset's tags reconciled with a tagger's labels: the labels a checkpoint was trained on and the chunk
scheme they are written in, the data's tags converted into that scheme (`--tag_scheme`, or files written in another
scheme than a checkpoint's), and the predictions converted back.

Converting is exact or refused: the metrics are computed on the tags converted back, and a tag that converting would
change (an `I-X` after `O` in BIO, read as `B-X`) would be scored, and written to predictions.conll, as another tag
than the data's. Every error names where the tag is (`Where`: a file and line, or a dataset's split, row and position).

`datasets`-based, not shipped with checkpoints (`schemes` is the pure-Python part they carry).
"""

from collections.abc import Callable, Iterable, Sequence

from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value
from transformers import PretrainedConfig

from ..schemes import PREFIXES, convert, detect_scheme, label_scheme, split_tag

Where = Callable[[str, int, int], str]  # (split, row, position) -> where the tag is, for error messages


def at_position(split: str, row: int, position: int) -> str:
    """A tag's place in a dataset, the default `Where`."""
    return f"split {split!r} row {row}, position {position}"


def tag_names(split: Dataset) -> list[list[str]]:
    """A split's tags (a `ClassLabel` sequence) as label names."""
    names = split.features["tags"].feature.names
    return [[names[tag] for tag in tags] for tags in split["tags"]]


def model_labels(config: PretrainedConfig) -> list[str]:
    """A tagger's labels, in id order."""
    return [config.id2label[index] for index in range(config.num_labels)]


def model_scheme(config: PretrainedConfig) -> str | None:
    """The scheme a tagger's labels are written in: its CRF's constraints, else what the label set tells (B-/I-
    labels read as BIO: only sequences tell IOB1 apart)."""
    return config.crf_constraints or label_scheme(model_labels(config))


def foreign_scheme(config: PretrainedConfig, sequences: Iterable[Sequence[str]]) -> str | None:
    """The data's chunk scheme where a tagger's labels are written in another (a tagger trained with --tag_scheme
    BIOES, given BIO files), else None. Without CRF constraints only label sets are compared, so B-/I- data is read
    as it is by a B-/I- model (BIO and IOB1 share labels)."""
    sequences = [list(tags) for tags in sequences]
    mine, theirs = model_scheme(config), detect_scheme(sequences)
    if mine is None or theirs is None:
        return None
    if config.crf_constraints is None:  # the labels' kind (B-/I-, BIOES, BILOU) decides; the sequences tell IOB1
        differ = label_scheme(tag for tags in sequences for tag in tags) != mine
    else:
        differ = theirs != mine
    return theirs if differ else None


def scheme_labels(names: Iterable[str], scheme: str) -> list[str]:
    """`scheme`'s labels for every chunk type among `names` (and `O` if they have it), so that a one-word chunk in the
    dev set has its `S-` label even if training has none."""
    names = set(names)
    kinds = sorted({split_tag(name)[1] for name in names} - {None})
    return (["O"] if "O" in names else []) + [f"{prefix}-{kind}" for kind in kinds for prefix in PREFIXES[scheme]]


def exactly_converted(tags: Sequence[str], source: str, target: str, where: Callable[[int], str]) -> list[str]:
    """`tags`, valid in `source`, written in `target`; a tag that converting would change is refused at
    `where(position)` (module doc)."""
    written = convert(tags, target)
    for position, (tag, back) in enumerate(zip(tags, convert(written, source))):
        if tag != back:
            raise ValueError(
                f"{where(position)}: tag {tag!r} is not valid {source} here (it reads as {back!r}); converting the tags"
                f" to {target} would change them: fix the data"
            )
    return written


def map_unknown(raw: DatasetDict, labels: Sequence[str], unknown_tag: str, by_type: bool) -> DatasetDict:
    """The splits with every tag `labels` cannot express replaced by `unknown_tag` (e.g. `O`), before any conversion:
    with `by_type` (data in another chunk scheme than the labels), a tag of a chunk type the labels lack; otherwise a
    tag not among them."""
    types = {split_tag(label)[1] for label in labels} if by_type else set()
    known = set(labels)

    def kept(tag: str) -> bool:
        return split_tag(tag)[1] in types if by_type else tag in known

    names = [name for name in _names(raw) if kept(name)]
    names = sorted({*names, unknown_tag})
    index = {name: i for i, name in enumerate(names)}
    old = _names(raw)
    return _with_tags(
        raw, names, lambda split, row, tags: [index[old[t] if kept(old[t]) else unknown_tag] for t in tags]
    )


def relabel(
    raw: DatasetDict,
    labels: Sequence[str],
    source: str | None = None,
    target: str | None = None,
    where: Where = at_position,
) -> DatasetDict:
    """The splits with their tags as ids of `labels`: converted from scheme `source` into `target` first if both are
    given (`exactly_converted`). A tag outside `labels` is an error naming it (and its converted form) at `where`."""
    names, labels = _names(raw), list(labels)
    index = {label: i for i, label in enumerate(labels)}

    def ids(split: str, row: int, tags: list[int]) -> list[int]:
        written = [names[tag] for tag in tags]
        if source and target:
            written = exactly_converted(written, source, target, lambda position: where(split, row, position))
        for position, (tag, label) in enumerate(zip(tags, written)):
            if label not in index:
                converted = f" ({label!r} in the checkpoint's {target})" if source and target else ""
                raise ValueError(
                    f"{where(split, row, position)}: tag {names[tag]!r}{converted} is not among the checkpoint's labels"
                    f" {labels} (--unknown_tag maps what it lacks to a label it has)"
                )
        return [index[label] for label in written]

    return _with_tags(raw, labels, ids)


def _names(raw: DatasetDict) -> list[str]:
    return next(iter(raw.values())).features["tags"].feature.names  # every split has the same


def _with_tags(
    raw: DatasetDict, labels: list[str], tags_of: Callable[[str, int, list[int]], list[int]]
) -> DatasetDict:
    features = Features({"tokens": List(Value("string")), "tags": List(ClassLabel(names=labels))})
    return DatasetDict(
        {
            split: part.map(
                lambda row, n, split=split: {"tags": tags_of(split, n, row["tags"])},
                with_indices=True,
                features=features,
            )
            for split, part in raw.items()
        }
    )


__all__ = [
    "at_position",
    "exactly_converted",
    "foreign_scheme",
    "map_unknown",
    "model_labels",
    "model_scheme",
    "relabel",
    "scheme_labels",
    "tag_names",
]
