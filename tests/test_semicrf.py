"""The semi-Markov CRF head against brute-force enumeration of every segmentation, and through the tagger, the
pipeline and the Trainer's conventions (tags in the labels' scheme, logits whose argmax is the decoded path)."""

import itertools
import math

import pytest
import torch
from conftest import tiny_config
from transformers import pipeline

import hf_rnn
from hf_rnn.heads import HEADS, SemiCrfHead
from hf_rnn.masking import MaskCompaction
from hf_rnn.semicrf import SemiMarkovCRF
from hf_rnn.vocabulary import build_word_tokenizer

BIO = {0: "O", 1: "B-X", 2: "I-X", 3: "B-Y", 4: "I-Y"}
BIOES = {0: "O", 1: "S-X", 2: "B-X", 3: "I-X", 4: "E-X"}


def segmentations(n: int, max_length: int, num_labels: int):
    """Every segmentation of n positions: lists of (first, last, label)."""
    if n == 0:
        yield []
        return
    for length in range(1, min(max_length, n) + 1):
        for rest in segmentations(n - length, max_length, num_labels):
            for label in range(num_labels):
                yield [*rest, (n - length, n - 1, label)]


def brute_force(crf: SemiMarkovCRF, scores: torch.Tensor, positions: list[int]):
    """log Z, the best segmentation (original positions), segment marginals and max-marginals (T, L, C) of one row
    whose real positions are `positions`, by enumeration."""
    row = scores[positions] + crf.length_scores  # compact (n, L, C)
    found = {}
    row, crf = row.detach(), crf.requires_grad_(False)
    for segmentation in segmentations(len(positions), crf.max_segment_length, crf.num_labels):
        total = sum(row[last, last - first, label] for first, last, label in segmentation)
        labels = [label for _, _, label in segmentation]
        total = total + crf.start_transitions[labels[0]] + crf.end_transitions[labels[-1]]
        total = total + sum(crf.transitions[a, b] for a, b in itertools.pairwise(labels))
        if math.isfinite(float(total)):
            found[tuple(segmentation)] = float(total)
    log_z = torch.logsumexp(torch.tensor(list(found.values()), dtype=torch.float64), 0)
    best = max(found, key=found.get)
    marginals = torch.zeros(scores.shape, dtype=torch.float64)
    max_marginals = torch.full(scores.shape, -math.inf, dtype=torch.float64)
    for segmentation, total in found.items():
        for first, last, label in segmentation:
            end, length = positions[last], last - first
            marginals[end, length, label] += math.exp(total - log_z)
            max_marginals[end, length, label] = max(max_marginals[end, length, label], total)
    best = [(positions[first], positions[last], label) for first, last, label in best]
    return log_z, best, marginals, max_marginals


MASKS = [
    [1, 1, 1, 1, 1],  # full
    [1, 1, 1, 0, 0],  # right padding
    [0, 0, 1, 1, 1],  # left padding
    [0, 1, 0, 1, 1],  # holes
    [0, 0, 0, 1, 0],  # one position
    [0, 0, 0, 0, 0],  # empty
]


@pytest.mark.parametrize("max_length", [1, 2, 3])
def test_semicrf_log_partition_viterbi_and_marginals_equal_brute_force(max_length):
    torch.manual_seed(max_length)
    crf = SemiMarkovCRF(3, max_length).double()
    for param in crf.parameters():
        torch.nn.init.normal_(param)
    mask = torch.tensor(MASKS, dtype=torch.bool)
    scores = torch.randn(len(MASKS), 5, max_length, 3, dtype=torch.float64)
    scores[0, :, :, 1] = -math.inf  # an impossible label in one row: never chosen, probability 0
    log_z = crf.log_partition(scores, mask)
    paths = crf.decode(scores, mask)
    marginals, max_marginals = crf.segment_marginals(scores, mask), crf.max_marginals(scores, mask)
    for row, row_mask in enumerate(MASKS):
        positions = [t for t, on in enumerate(row_mask) if on]
        if not positions:
            assert log_z[row] == 0 and paths[row] == [] and not marginals[row].any()
            continue
        expected_z, best, expected_marginals, expected_max = brute_force(crf, scores[row], positions)
        torch.testing.assert_close(log_z[row], expected_z)
        assert paths[row] == best
        torch.testing.assert_close(marginals[row], expected_marginals)
        torch.testing.assert_close(max_marginals[row], expected_max)


def test_segments_longer_than_the_batch_are_no_trouble():
    """max_segment_length 4 over batches of 1 and 2 positions (a length-1 sentence): brute force still agrees."""
    torch.manual_seed(5)
    crf = SemiMarkovCRF(3, 4).double()
    for param in crf.parameters():
        torch.nn.init.normal_(param)
    for mask in ([[1]], [[1, 1], [0, 1]]):
        mask = torch.tensor(mask, dtype=torch.bool)
        scores = torch.randn(*mask.shape, 4, 3, dtype=torch.float64)
        log_z, paths = crf.log_partition(scores, mask), crf.decode(scores, mask)
        marginals, max_marginals = crf.segment_marginals(scores, mask), crf.max_marginals(scores, mask)
        for row in range(mask.size(0)):
            expected_z, best, expected_marginals, expected_max = brute_force(
                crf, scores[row], mask[row].nonzero().squeeze(1).tolist()
            )
            torch.testing.assert_close(log_z[row], expected_z)
            assert paths[row] == best
            torch.testing.assert_close(marginals[row], expected_marginals)
            torch.testing.assert_close(max_marginals[row], expected_max)
    model = semicrf_tagger(max_segment_length=6).eval()
    with torch.no_grad():
        output = model(torch.tensor([[5]]), labels=torch.tensor([[1]]), return_predictions=True)
    assert torch.isfinite(output.loss) and torch.equal(output.logits.argmax(-1), output.predictions)


def test_semicrf_of_length_one_is_the_linear_chain_crf():
    torch.manual_seed(0)
    semi, chain = SemiMarkovCRF(4, 1), hf_rnn.LinearChainCRF(4)
    for param in (*semi.parameters(), *chain.parameters()):
        torch.nn.init.normal_(param)
    torch.nn.init.zeros_(semi.length_scores)
    for name in ("transitions", "start_transitions", "end_transitions"):
        getattr(semi, name).data.copy_(getattr(chain, name).data)
    emissions = torch.randn(3, 6, 4)
    mask = torch.tensor([[1] * 6, [0, 0, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    torch.testing.assert_close(semi.log_partition(emissions.unsqueeze(2), mask), chain.log_partition(emissions, mask))
    decoded = chain.decode(emissions, mask)
    for row, segments in enumerate(semi.decode(emissions.unsqueeze(2), mask)):
        assert [label for _, _, label in segments] == [tag for tag in decoded[row].tolist() if tag != -100]


def semicrf_tagger(labels=BIO, **overrides):
    config = tiny_config(head_type="semicrf", id2label=labels, label2id={v: k for k, v in labels.items()}, **overrides)
    return hf_rnn.RnnForTokenClassification(config)


def test_the_semicrf_head_is_in_the_registry_and_its_config_is_checked():
    assert HEADS["semicrf"] is SemiCrfHead and isinstance(semicrf_tagger().head, SemiCrfHead)
    assert semicrf_tagger().config.max_segment_length == 4 and not semicrf_tagger().config.use_crf
    with pytest.raises(ValueError, match="max_segment_length"):
        semicrf_tagger(max_segment_length=0)
    with pytest.raises(ValueError, match="max_segment_length"):
        tiny_config(max_segment_length=3)
    with pytest.raises(
        ValueError, match=r"head_type='semicrf' cannot write chunks: .*cannot write a 'Y' chunk in BIOES"
    ):
        semicrf_tagger({0: "O", 1: "S-X", 2: "B-Y", 3: "I-Y"})
    one_word_y = semicrf_tagger({0: "O", 1: "B-X", 2: "I-X", 3: "B-Y"}).head  # Y chunks are one word long
    assert [row[2] for row in one_word_y.writable] == [True, False, False, False]
    with pytest.raises(ValueError, match="chunk tags without an 'O'"):
        semicrf_tagger({0: "B-X", 1: "I-X"})


def test_over_labels_that_are_not_chunk_tags_the_semicrf_is_the_linear_chain_crf_of_words():
    """POS tags (or transformers' LABEL_i) have no chunks: every word is a segment, decoded as a linear-chain CRF
    with the same scores would decode it, and the gold segmentation is one word per segment."""
    torch.manual_seed(0)
    model = semicrf_tagger({0: "NOUN", 1: "VERB", 2: "DET"}, max_segment_length=3).eval()
    for param in model.semicrf.parameters():
        torch.nn.init.normal_(param)
    ids, labels = torch.tensor([[5, 6, 7, 8], [0, 9, 10, 11]]), torch.tensor([[0, 0, 1, 2], [-100, 2, 0, 0]])
    mask = ids != 0
    with torch.no_grad():
        output = model(ids, attention_mask=mask.long(), labels=labels, return_predictions=True)
    chain = hf_rnn.LinearChainCRF(3)
    for name in ("transitions", "start_transitions", "end_transitions"):
        getattr(chain, name).data.copy_(
            getattr(model.semicrf, name).data[1:, 1:]
            if name == "transitions"
            else getattr(model.semicrf, name).data[1:]
        )
    per_word = output.emissions[..., :3] + output.emissions[..., 3:6] + output.emissions[..., 6:9]
    per_word = per_word + model.semicrf.length_scores[0, 1:]
    assert torch.equal(output.predictions, chain.decode(per_word, mask))
    nll = -chain.log_likelihood(per_word, labels.clamp(min=0), mask).sum() / mask.sum()
    assert output.loss.item() == pytest.approx(nll.item(), rel=1e-5)
    with pytest.raises(ValueError, match="head_type"):
        tiny_config(head_type="crff")
    with pytest.raises(ValueError, match="use_crf"):
        semicrf_tagger(use_crf=True)


@pytest.mark.parametrize("labels", [BIO, BIOES], ids=["BIO", "BIOES"])
def test_semicrf_tagger_decodes_to_tags_whose_chunks_are_its_segments(labels):
    torch.manual_seed(0)
    model = semicrf_tagger(labels, max_segment_length=3).eval()
    for param in model.semicrf.parameters():
        torch.nn.init.normal_(param)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [0, 0, 3, 4, 5, 6], [7, 0, 0, 0, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        output = model(ids, attention_mask=mask)
        scores = model.head.segment_scores(output.emissions, MaskCompaction(mask))
        compact = hf_rnn.masking.MaskCompaction(mask.bool()).compact_mask
        segmentations = model.semicrf.decode(scores, compact)
    names = hf_rnn.schemes
    for row, segments in enumerate(segmentations):
        tags = [model.config.id2label[t] for t in output.predictions[row].tolist() if t != -100]
        chunks = [(model.head.types[label - 1], first, last) for first, last, label in segments if label]
        assert names.chunks(tags) == chunks
        assert names.convert(tags, "BIO" if labels is BIO else "BIOES") == tags  # valid in the scheme
    real = mask.bool()
    assert torch.equal(output.logits.argmax(-1)[real], output.predictions[real])
    assert (output.predictions[~real] == -100).all()
    probabilities = model.tag_probabilities(output.emissions, real)
    torch.testing.assert_close(probabilities.sum(-1), real.float())


def test_semicrf_loss_is_the_brute_force_nll_of_the_gold_segmentation():
    torch.manual_seed(1)
    model = semicrf_tagger(max_segment_length=2).eval()
    for param in model.semicrf.parameters():
        torch.nn.init.normal_(param)
    ids, labels = torch.tensor([[5, 6, 7, 8]]), torch.tensor([[1, 2, 0, 3]])  # B-X I-X O B-Y
    with torch.no_grad():
        output = model(ids, labels=labels)
        scores = model.head.segment_scores(output.emissions, MaskCompaction(torch.ones(1, 4, dtype=torch.bool)))[
            0
        ].double()
    crf = model.semicrf.double()
    log_z = brute_force(crf, scores, [0, 1, 2, 3])[0]
    gold = [(0, 1, 1), (2, 2, 0), (3, 3, 2)]  # X = segment label 1, O = 0, Y = 2
    total = sum(
        scores[last, last - first, label] + crf.length_scores[last - first, label] for first, last, label in gold
    )
    total += crf.start_transitions[1] + crf.transitions[1, 0] + crf.transitions[0, 2] + crf.end_transitions[2]
    assert output.loss.item() == pytest.approx(float(log_z - total) / 4, rel=1e-5)


def test_a_chunk_longer_than_max_segment_length_is_refused_naming_row_position_and_limit():
    model = semicrf_tagger(max_segment_length=2)
    labels = torch.tensor([[0, 1, 2, -100], [0, 3, 4, 4]])
    with pytest.raises(ValueError, match=r"labels\[1\] at position 1: a 'Y' chunk of 3 words .*max_segment_length=2"):
        model(
            torch.tensor([[5, 6, 7, 0], [5, 6, 7, 8]]),
            attention_mask=torch.tensor([[1, 1, 1, 0], [1] * 4]),
            labels=labels,
        )


def test_semicrf_trains_under_bf16_autocast_without_nan():
    torch.manual_seed(0)
    model = semicrf_tagger(bidirectional=True)
    ids, labels = (
        torch.tensor([[5, 6, 7, 8, 0], [0, 9, 10, 11, 12]]),
        torch.tensor([[1, 2, 0, 3, -100], [-100, 0, 3, 4, 0]]),
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(ids, attention_mask=(ids != 0).long(), labels=labels)
    output.loss.backward()
    assert output.loss.dtype == torch.float32 and torch.isfinite(output.loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.semicrf.transitions.grad.abs().sum() > 0


def test_the_token_classification_pipeline_gives_the_semicrf_tags():
    tokenizer = build_word_tokenizer([["Jean", "went", "to", "Paris", "with", "Marie"]])
    torch.manual_seed(3)
    model = semicrf_tagger(vocab_size=tokenizer.vocab_size).eval()
    for param in model.semicrf.parameters():
        torch.nn.init.normal_(param, std=3.0)
    text = "Jean went to Paris with Marie"
    found = pipeline("token-classification", model=model, tokenizer=tokenizer)(text)
    expected = [(word, tag) for word, tag, _ in model.tag(text, tokenizer) if tag != "O"]
    assert [(entity["word"], entity["entity"]) for entity in found] == expected
