"""LinearChainCRF against brute-force enumeration of every tag path, pytorch-crf, gradcheck, and its constraints."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hf_rnn.crf as hf_crf
from hf_rnn import LinearChainCRF, scheme_constraints
from hf_rnn.crf import PENALTY
from hf_rnn.masking import ValueChecks

torchcrf = pytest.importorskip("torchcrf")


def random_crf(num_tags: int, constraints=None, dtype=torch.float64, seed: int = 0) -> LinearChainCRF:
    generator = torch.Generator().manual_seed(seed)
    crf = LinearChainCRF(num_tags, constraints).to(dtype)
    with torch.no_grad():
        for param in (crf.transitions, crf.start_transitions, crf.end_transitions):
            param.copy_(torch.randn(param.shape, generator=generator, dtype=dtype))
    return crf


@torch.no_grad()
def brute_force(crf: LinearChainCRF, emissions: torch.Tensor, mask: torch.Tensor):
    """Every tag path of every row scored from the definition: positions where mask is 0 are dropped first.

    Returns per row: a dict path -> score (disallowed moves score -inf), with () -> 0 for an empty row.
    """
    allowed, start_ok, end_ok = crf.allowed_transitions, crf.allowed_start, crf.allowed_end
    results = []
    for row in range(emissions.size(0)):
        kept = emissions[row][mask[row]]  # (n, C)
        scores = {}
        if len(kept) == 0:
            results.append({(): 0.0})
            continue
        for path in itertools.product(range(crf.num_tags), repeat=len(kept)):
            ok = (
                bool(start_ok[path[0]])
                and bool(end_ok[path[-1]])
                and all(bool(allowed[a, b]) for a, b in zip(path, path[1:]))
            )
            score = crf.start_transitions[path[0]] + crf.end_transitions[path[-1]]
            score = score + sum(kept[i, tag] for i, tag in enumerate(path))
            score = score + sum(crf.transitions[a, b] for a, b in zip(path, path[1:]))
            scores[path] = float(score) if ok else float("-inf")
        results.append(scores)
    return results


def expand(path: tuple, mask_row: torch.Tensor) -> list:
    """A path over the unmasked positions, laid out on the full row with -100 at masked positions."""
    full, tags = [], iter(path)
    for keep in mask_row.tolist():
        full.append(next(tags) if keep else -100)
    return full


masks = st.lists(st.lists(st.booleans(), min_size=4, max_size=4), min_size=1, max_size=3)


@settings(max_examples=40, deadline=None, derandomize=True)  # the same cases in CI
@given(mask_rows=masks, num_tags=st.integers(1, 3), seed=st.integers(0, 10_000), constrained=st.booleans())
def test_against_brute_force_enumeration(mask_rows, num_tags, seed, constrained):
    """log Z, log-likelihood, Viterbi, top-k and marginals on random masks (holes, left/right padding, empty rows)."""
    constraints = None
    if constrained and num_tags == 3:  # O, B-X, I-X under BIO: no I-X first, no O -> I-X
        constraints = scheme_constraints(["O", "B-X", "I-X"], "BIO")
    crf = random_crf(num_tags, constraints, seed=seed)
    mask = torch.tensor(mask_rows)
    generator = torch.Generator().manual_seed(seed)
    emissions = torch.randn(*mask.shape, num_tags, generator=generator, dtype=torch.float64)
    truth = brute_force(crf, emissions, mask)

    log_z = crf.log_partition(emissions, mask)
    k = 4
    paths, top_scores = crf.top_k(emissions, mask, k=k)
    best = crf.decode(emissions, mask)
    marginals = crf.marginals(emissions, mask)
    for row, scores in enumerate(truth):
        finite = {p: s for p, s in scores.items() if s > float("-inf")}
        expected_log_z = torch.logsumexp(torch.tensor(list(finite.values()), dtype=torch.float64), 0)
        torch.testing.assert_close(log_z[row], expected_log_z)
        ranked = sorted(finite.items(), key=lambda item: -item[1])
        assert best[row].tolist() == expand(ranked[0][0], mask[row])
        for rank in range(min(k, len(ranked))):
            torch.testing.assert_close(top_scores[row, rank].item(), ranked[rank][1])
            assert finite[tuple(t for t in paths[row, rank].tolist() if t != -100)] == pytest.approx(ranked[rank][1])
        assert all(score == float("-inf") for score in top_scores[row, len(ranked) :].tolist()) or not mask[row].any()
        # log-likelihood of a random allowed path, and marginals as sums of path probabilities
        path, score = ranked[seed % len(ranked)]
        tags = torch.tensor(expand(path, mask[row]))[None]
        torch.testing.assert_close(
            crf.log_likelihood(emissions[row : row + 1], tags, mask[row : row + 1])[0], score - expected_log_z
        )
        if mask[row].any():
            expected = torch.zeros(int(mask[row].sum()), num_tags, dtype=torch.float64)
            for p, s in finite.items():
                for position, tag in enumerate(p):
                    expected[position, tag] += torch.exp(torch.tensor(s, dtype=torch.float64) - expected_log_z)
            torch.testing.assert_close(marginals[row][mask[row]], expected)
        assert torch.all(marginals[row][~mask[row]] == 0)


def test_empty_row_has_log_likelihood_zero_and_no_tags():
    crf = random_crf(3)
    emissions = torch.randn(2, 4, 3, dtype=torch.float64)
    mask = torch.tensor([[True, True, False, False], [False] * 4])
    tags = torch.randint(3, (2, 4))
    ll = crf.log_likelihood(emissions, tags, mask)
    assert ll[1] == 0 and torch.isfinite(ll).all()
    assert crf.decode(emissions, mask)[1].tolist() == [-100] * 4


@pytest.mark.parametrize("shape", [(6, 9, 5), (1, 2, 4), (3, 30, 7)])
def test_matches_pytorch_crf_on_right_padded_batches(shape):
    batch, length, num_tags = shape
    crf = random_crf(num_tags, dtype=torch.float32)
    reference = torchcrf.CRF(num_tags, batch_first=True)
    with torch.no_grad():
        for name in ("transitions", "start_transitions", "end_transitions"):
            getattr(reference, name).copy_(getattr(crf, name))
    emissions = torch.randn(batch, length, num_tags, requires_grad=True)
    tags = torch.randint(num_tags, (batch, length))
    lengths = torch.randint(1, length + 1, (batch,))
    lengths[0] = length
    mask = torch.arange(length) < lengths[:, None]
    ours, theirs = crf.log_likelihood(emissions, tags, mask), reference(emissions, tags, mask, reduction="none")
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-5)
    ours_grads = torch.autograd.grad(
        ours.sum(), [emissions, crf.transitions, crf.start_transitions, crf.end_transitions]
    )
    their_grads = torch.autograd.grad(
        theirs.sum(), [emissions, reference.transitions, reference.start_transitions, reference.end_transitions]
    )
    for a, b in zip(ours_grads, their_grads):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    decoded = crf.decode(emissions, mask)
    for row, path in enumerate(reference.decode(emissions, mask)):
        assert decoded[row, : len(path)].tolist() == path
        assert (decoded[row, len(path) :] == -100).all()


def test_gradcheck_float64_with_holes_and_constraints():
    crf = random_crf(3, scheme_constraints(["O", "B-X", "I-X"], "BIO"))
    tags = torch.tensor([[0, 1, 2, 2, 0], [1, 2, 0, 0, 1], [0, 0, 1, 2, 2]])
    mask = torch.tensor([[1, 1, 0, 1, 1], [0, 0, 1, 1, 1], [1, 1, 1, 1, 0]], dtype=torch.bool)

    def log_likelihood(emissions, transitions, start, end):
        parameters = {"transitions": transitions, "start_transitions": start, "end_transitions": end}
        return torch.func.functional_call(crf, parameters, (emissions, tags, mask))

    inputs = [torch.randn(3, 5, 3, dtype=torch.float64)] + [
        p.detach().clone() for p in (crf.transitions, crf.start_transitions, crf.end_transitions)
    ]
    assert torch.autograd.gradcheck(log_likelihood, [x.requires_grad_() for x in inputs])


BIO = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _is_valid(path, constraints) -> bool:
    allowed, start, end = constraints
    tags = [t for t in path if t != -100]
    return not tags or (start[tags[0]] and end[tags[-1]] and all(allowed[a][b] for a, b in zip(tags, tags[1:])))


@pytest.mark.parametrize("scheme", ["BIO", "IOB1", "BIOES"])
def test_decoded_paths_never_break_constraints(scheme):
    labels = ["O"] + [f"{p}-{t}" for t in ("A", "B") for p in ("BI" if scheme != "BIOES" else "BIES")]
    constraints = scheme_constraints(labels, scheme)
    crf = random_crf(len(labels), constraints, dtype=torch.float32)
    emissions = 8 * torch.randn(64, 12, len(labels))  # strong, contradictory local evidence
    mask = torch.rand(64, 12) > 0.2
    paths, scores = crf.top_k(emissions, mask, k=3)
    assert torch.isfinite(scores[mask.any(1)]).all()
    for path in paths.reshape(-1, 12).tolist():
        assert _is_valid(path, constraints)
    unconstrained = random_crf(len(labels), None, dtype=torch.float32)
    assert not all(_is_valid(p, constraints) for p in unconstrained.decode(emissions, mask).tolist())


def test_extreme_scores_with_constraints_stay_exact_and_finite(monkeypatch):
    """After a sure `O`, the best emission sits on `I-X` (unreachable from `O`), 800 nats above the rest: every
    reachable message underflows in exp-space, so the chain must be redone in log-space."""
    labels = ["O", "B-X", "I-X", "E-X", "S-X"]
    crf = random_crf(5, scheme_constraints(labels, "BIOES"))
    emissions = torch.zeros(2, 4, 5, dtype=torch.float64)
    emissions[:, 0, 1:] = -800.0  # position 0: surely O
    emissions[:, 1:, 2] = 800.0  # then I-X, which cannot follow O
    emissions[1, 2:, 0] = -800.0
    mask = torch.ones(2, 4, dtype=torch.bool)
    truth = brute_force(crf, emissions, mask)
    exact = hf_crf._log_partition_exact
    calls = []
    monkeypatch.setattr(hf_crf, "_log_partition_exact", lambda *args: calls.append(1) or exact(*args))
    log_z = crf.log_partition(emissions, mask)
    assert calls, "the exact log-space path should have been taken"
    for row, scores in enumerate(truth):
        finite = torch.tensor([s for s in scores.values() if s > float("-inf")], dtype=torch.float64)
        torch.testing.assert_close(log_z[row], torch.logsumexp(finite, 0))
    assert torch.isfinite(crf.marginals(emissions, mask)).all()


def test_a_gold_path_that_breaks_a_constraint_gives_a_finite_loss_and_gradient():
    crf = random_crf(3, scheme_constraints(["O", "B-X", "I-X"], "BIO"), dtype=torch.float32)
    emissions = torch.randn(1, 3, 3, requires_grad=True)
    log_likelihood = crf.log_likelihood(emissions, torch.tensor([[2, 0, 2]]))  # starts with I-X, then O -> I-X
    assert torch.isfinite(log_likelihood).all() and log_likelihood.item() < PENALTY / 2
    log_likelihood.sum().backward()
    assert torch.isfinite(emissions.grad).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_keeps_the_crf_in_float32(dtype):
    crf = random_crf(5, scheme_constraints(BIO, "BIO"), dtype=torch.float32)
    emissions = torch.randn(4, 7, 5)
    tags = torch.zeros(4, 7, dtype=torch.long)
    mask = torch.ones(4, 7, dtype=torch.bool)
    expected = crf.log_likelihood(emissions.to(dtype).float(), tags, mask)
    with torch.autocast("cpu", dtype=dtype):
        half = emissions.to(dtype)
        log_likelihood = crf.log_likelihood(half, tags, mask)
        marginals = crf.marginals(half, mask)
        decoded = crf.decode(half, mask)
    assert log_likelihood.dtype == torch.float32 and marginals.dtype == torch.float32
    torch.testing.assert_close(log_likelihood, expected)
    assert torch.equal(decoded, crf.decode(emissions.to(dtype).float(), mask))


def test_input_validation():
    crf = LinearChainCRF(3)
    with pytest.raises(ValueError, match="emissions"):
        crf.decode(torch.randn(2, 4, 5))
    with pytest.raises(ValueError, match="mask"):
        crf.decode(torch.randn(2, 4, 3), torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="k must"):
        crf.top_k(torch.randn(2, 4, 3), k=0)
    with pytest.raises(ValueError, match="first tag"):
        crf.set_constraints(None, [False] * 3, None)


def test_backward_underflow_falls_back_to_the_exact_gradient(monkeypatch):
    """Force the backward messages to report an underflow: the gradient must come from the exact recursion and
    equal the fast path's."""
    crf = random_crf(4, dtype=torch.float64)
    emissions = torch.randn(3, 6, 4, dtype=torch.float64, requires_grad=True)
    tags = torch.randint(4, (3, 6))
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [0, 1, 1, 0, 1, 1]], dtype=torch.bool)
    expected = torch.autograd.grad(crf.log_likelihood(emissions, tags, mask).sum(), [emissions, crf.transitions])
    chain, calls = hf_crf._chain, []

    def backward_underflows(*args):
        calls.append(1)
        messages, norms, underflow = chain(*args)
        return messages, norms, underflow | (len(calls) % 2 == 0)  # every second chain is a backward one

    monkeypatch.setattr(hf_crf, "_chain", backward_underflows)
    actual = torch.autograd.grad(crf.log_likelihood(emissions, tags, mask).sum(), [emissions, crf.transitions])
    assert len(calls) == 2
    for a, b in zip(actual, expected):
        torch.testing.assert_close(a, b)


# Hostile input: huge or non-finite scores, empty shapes, tags outside the tag set.


@pytest.mark.parametrize("size", [5e3, 2e4, 1e6, 1e30])
def test_forbidden_moves_never_carry_probability_whatever_the_scores(size):
    """Forbidden moves are excluded outright, not merely penalised: huge emissions on a forbidden first tag
    (I-X), a forbidden move (O -> I-X) or a forbidden last tag (BIOES B-X) must not reach log Z or the marginals."""
    labels = ["O", "B-X", "I-X"]
    crf = random_crf(3, scheme_constraints(labels, "BIO"), dtype=torch.float32)
    emissions = torch.zeros(2, 3, 3)
    emissions[0, 0, 2] = size  # I-X first
    emissions[1, :, 2] = size  # I-X everywhere: only B-X first, then I-X, is allowed
    emissions[1, 0, 0] = size / 2  # ... and O first (then O -> I-X) would outscore B-X I-X I-X
    mask = torch.ones(2, 3, dtype=torch.bool)
    marginals = crf.marginals(emissions, mask)
    assert torch.isfinite(marginals).all()
    assert marginals[:, 0, 2].max() == 0, "probability on the forbidden first tag I-X"
    torch.testing.assert_close(marginals.sum(-1), torch.ones(2, 3))
    decoded = crf.decode(emissions, mask)
    assert decoded[1].tolist() == [1, 2, 2]
    assert marginals[1].argmax(-1).tolist() == [1, 2, 2], "marginals disagree with the constrained Viterbi path"
    log_z = crf.log_partition(emissions, mask)
    gold = crf.log_likelihood(emissions, decoded, mask)
    assert torch.isfinite(log_z).all() and (gold <= 1e-3 * size).all(), "log Z below an allowed path's score"
    bioes = ["O", "B-X", "I-X", "E-X", "S-X"]
    crf = random_crf(5, scheme_constraints(bioes, "BIOES"), dtype=torch.float32)
    last = torch.zeros(1, 2, 5)
    last[0, 1, 1] = size  # B-X may not end a sequence
    assert crf.marginals(last)[0, 1, 1] == 0


def test_log_z_with_constraints_equals_brute_force_over_allowed_paths_in_float64():
    crf = random_crf(3, scheme_constraints(["O", "B-X", "I-X"], "BIO"))
    emissions = torch.randn(2, 4, 3, dtype=torch.float64) * 30000
    mask = torch.ones(2, 4, dtype=torch.bool)
    for row, scores in enumerate(brute_force(crf, emissions, mask)):
        finite = torch.tensor([s for s in scores.values() if s > float("-inf")], dtype=torch.float64)
        torch.testing.assert_close(crf.log_partition(emissions, mask)[row], torch.logsumexp(finite, 0))


def test_forbidden_gold_moves_cost_the_documented_penalty_each():
    """Bad data (a gold path breaking a constraint) gets a finite loss: each forbidden move scores PENALTY."""
    crf = random_crf(3, scheme_constraints(["O", "B-X", "I-X"], "BIO"), dtype=torch.float64)
    emissions = torch.randn(1, 3, 3, dtype=torch.float64)
    unconstrained = random_crf(3, dtype=torch.float64)
    gold = torch.tensor([[2, 0, 2]])  # I-X first, then O -> I-X: two forbidden moves
    raw_score = unconstrained.log_likelihood(emissions, gold) + unconstrained.log_partition(emissions)
    expected = raw_score - crf.transitions[0, 2] - crf.start_transitions[2] + 2 * PENALTY
    expected = expected - crf.log_partition(emissions)
    torch.testing.assert_close(crf.log_likelihood(emissions, gold), expected)
    assert crf.broken_move(gold, None) == (0, 0, None, 2)
    assert crf.broken_move(torch.tensor([[0, 1, 2], [1, 0, 2]]), None) == (1, 2, 0, 2)
    assert crf.broken_move(torch.tensor([[0, 1, 2]]), None) is None


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_emissions_raise_instead_of_giving_a_confident_path(bad):
    crf = random_crf(3, dtype=torch.float32)
    emissions = torch.randn(2, 4, 3)
    emissions[1, 2, 0] = bad
    for call in (
        crf.decode,
        crf.marginals,
        crf.log_partition,
        lambda e: crf.log_likelihood(e, torch.zeros(2, 4).long()),
    ):
        with pytest.raises(ValueError, match=r"emissions\[1, 2\]"):
            call(emissions)
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[1, 2] = False  # a padded position may hold anything
    assert crf.decode(emissions, mask)[1, 2] == -100


@pytest.mark.parametrize("shape", [(2, 0, 3), (0, 4, 3), (0, 0, 3)])
def test_empty_batches_and_zero_length_sequences_give_empty_results(shape):
    crf = random_crf(3, scheme_constraints(["O", "B-X", "I-X"], "BIO"), dtype=torch.float32)
    emissions = torch.randn(shape, requires_grad=True)
    batch_size, seq_len, _ = shape
    tags = torch.zeros(batch_size, seq_len, dtype=torch.long)
    assert crf.decode(emissions).shape == (batch_size, seq_len)
    paths, scores = crf.top_k(emissions, k=2)
    assert paths.shape == (batch_size, 2, seq_len) and scores.shape == (batch_size, 2)
    assert crf.marginals(emissions).shape == shape
    log_likelihood = crf.log_likelihood(emissions, tags)
    assert log_likelihood.shape == (batch_size,) and torch.equal(log_likelihood, torch.zeros(batch_size))
    log_likelihood.sum().backward()
    assert torch.equal(emissions.grad, torch.zeros(shape))


@pytest.mark.parametrize("bad", [-1, 3, -100])
def test_tags_outside_the_tag_set_name_the_value(bad):
    crf = random_crf(3, dtype=torch.float32)
    tags = torch.tensor([[0, bad, 1]])
    with pytest.raises(ValueError, match=f"tags.*{bad}"):
        crf.log_likelihood(torch.randn(1, 3, 3), tags)
    mask = torch.tensor([[True, False, True]])  # at a masked position any value is ignored
    assert torch.isfinite(crf.log_likelihood(torch.randn(1, 3, 3), tags, mask)).all()


@settings(max_examples=25, deadline=None, derandomize=True)
@given(mask_rows=masks, num_tags=st.integers(1, 3), seed=st.integers(0, 10_000), constrained=st.booleans())
def test_max_marginals_are_the_best_path_scores_through_each_tag(mask_rows, num_tags, seed, constrained):
    """Against enumeration: max over the allowed paths through (t, j); with ties broken toward the Viterbi path,
    the per-position argmax is exactly that path."""
    labels = ["O", "B-X", "I-X"][:num_tags]
    constraints = scheme_constraints(labels, "BIO") if constrained and num_tags == 3 else None
    crf = random_crf(num_tags, constraints, seed=seed)
    mask = torch.tensor(mask_rows, dtype=torch.bool)
    emissions = torch.randn(
        mask.size(0), 4, num_tags, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
    )
    path = crf.decode(emissions, mask)
    plain, nudged = crf.max_marginals(emissions, mask), crf.max_marginals(emissions, mask, path)
    for row, scores in enumerate(brute_force(crf, emissions, mask)):
        kept = int(mask[row].sum())
        expected = torch.full((kept, num_tags), float("-inf"), dtype=torch.float64)
        for p, score in scores.items():
            for position, tag in enumerate(p):
                expected[position, tag] = max(expected[position, tag], score)
        torch.testing.assert_close(plain[row][mask[row]], expected)
        assert torch.equal(nudged[row][mask[row]].argmax(-1), path[row][mask[row]])
        assert torch.all(nudged[row][~mask[row]] == 0)
    torch.testing.assert_close(nudged, plain)  # the nudge moves ties by one ulp, nothing else


@torch.no_grad()
def test_reading_log_z_leaves_the_shared_forward_messages_unchanged():
    """The backward pass reuses the forward messages that log Z reads: reading it must not rescale them."""
    crf = random_crf(4)
    emissions = torch.randn(3, 5, 4, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 1, 1, 1, 0]], dtype=torch.bool)
    compact, compaction = crf._prepare(emissions, mask, ValueChecks())
    chains = hf_crf._Chains(compact, compaction.lengths, compaction.reverse, *crf._scores(float("-inf")))
    messages = [tensor.clone() for tensor in chains.forward]
    first = chains.log_z()
    assert all(torch.equal(a, b) for a, b in zip(chains.forward, messages))
    assert torch.equal(chains.log_z(), first)
    expected = [
        torch.tensor(list(paths.values()), dtype=torch.float64).logsumexp(0)
        for paths in brute_force(crf, emissions, mask)
    ]
    torch.testing.assert_close(first, torch.stack(expected))
