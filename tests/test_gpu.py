"""What only a GPU can break: cuDNN's recurrent kernels, DDP over NCCL, half precision, CUDA graphs (`make test-gpu`).

Every test compares against an independent reference: each sequence alone, the same computation in float32, eager
mode, one process. The CUDA cases are marked `gpu` and skip, saying why, where torch sees no CUDA device; where the
same check means something on the CPU it runs there too (unmarked), so that the test code itself is exercised by
`make test` on any machine.
"""

import os
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_launched, tiny_config

import hf_rnn

HERE = Path(__file__).parent
NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: torch sees none")


def on_cuda(*values) -> pytest.param:
    """A parameter set that needs a CUDA device: marked `gpu`, skipped where there is none."""
    return pytest.param(*values, marks=[pytest.mark.gpu, NO_CUDA])


CPU_AND_CUDA = ["cpu", on_cuda("cuda")]


def _padded(vocab_size: int, side: str, device: str) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Sequences of lengths 6, 3, 5 and 1 in a batch of width 8, padded on `side`, varied ids under the padding."""
    sequences = [torch.randint(1, vocab_size, (n,), device=device) for n in (6, 3, 5, 1)]
    ids = torch.randint(1, vocab_size, (len(sequences), 8), device=device)
    mask = torch.zeros_like(ids)
    for row, sequence in enumerate(sequences):
        start = 0 if side == "right" else 8 - len(sequence)
        ids[row, start : start + len(sequence)] = sequence
        mask[row, start : start + len(sequence)] = 1
    return sequences, ids, mask


@pytest.mark.parametrize("device", CPU_AND_CUDA)
@pytest.mark.parametrize("cell_type", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_a_padded_bidirectional_batch_equals_each_sequence_alone(device, cell_type, side):
    """cuDNN runs the torch cells on CUDA: padding must still change no output and no final state."""
    config = tiny_config(cell_type=cell_type, bidirectional=True, num_layers=2, hidden_size=16, embedding_size=8)
    model = hf_rnn.RnnModel(config).to(device).eval()
    sequences, ids, mask = _padded(config.vocab_size, side, device)
    with torch.no_grad():
        batched = model(ids, attention_mask=mask, use_cache=True)
        for row, sequence in enumerate(sequences):
            alone = model(sequence[None], use_cache=True)
            real = mask[row].bool()
            torch.testing.assert_close(batched.last_hidden_state[row][real], alone.last_hidden_state[0])
            for state, single in zip(batched.cache.states, alone.cache.states):  # h, and the LSTM's c
                torch.testing.assert_close(state[:, row], single[:, 0])


@pytest.mark.gpu
@NO_CUDA
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="DDP over NCCL needs 2 CUDA devices (one process each)")
@pytest.mark.parametrize("head", ["tagger", "crf", "lm"])
def test_two_processes_on_two_gpus_equal_one_process_with_the_same_global_batch(head, tmp_path):
    """tests/test_training.py's DDP check, on CUDA: cuDNN kernels and NCCL's all-reduce instead of gloo."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    env.pop("ACCELERATE_USE_CPU", None)
    script = str(HERE / "trainer_run.py")
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    for command in (
        [*launch, script, str(tmp_path / "ddp"), head, "4", "1", "cuda"],
        [sys.executable, script, str(tmp_path / "single"), head, "8", "1", "cuda"],
    ):
        result = run_launched(command, timeout=600, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
    single, ddp = (torch.load(tmp_path / name, weights_only=True) for name in ("single", "ddp"))
    for name in single:
        torch.testing.assert_close(single[name], ddp[name], atol=1e-5, rtol=1e-4, msg=name)


def _crf_tagger(device: str, **overrides) -> tuple[hf_rnn.RnnForTokenClassification, dict]:
    """A BiLSTM-CRF tagger in eval mode (no dropout) and a right-padded batch with labels."""
    config = tiny_config(bidirectional=True, use_crf=True, hidden_size=16, embedding_size=8, **overrides)
    model = hf_rnn.RnnForTokenClassification(config).to(device).eval()
    _, ids, mask = _padded(config.vocab_size, "right", device)
    labels = torch.randint(0, 3, ids.shape, device=device).masked_fill(mask == 0, -100)
    return model, dict(input_ids=ids, attention_mask=mask, labels=labels)


HALF = [("cpu", torch.bfloat16), on_cuda("cuda", torch.bfloat16), on_cuda("cuda", torch.float16)]


@pytest.mark.parametrize("device, dtype", HALF)
def test_autocast_keeps_the_crf_in_float32(device, dtype):
    """Under autocast the encoder runs in half precision, the CRF in float32: the loss equals the CRF's likelihood
    of the (half-precision) emissions computed in float32 outside autocast, and stays near the float32 model's."""
    model, batch = _crf_tagger(device)
    with torch.no_grad():
        reference = model(**batch)
        with torch.autocast(device, dtype=dtype):
            out = model(**batch)
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    scored = (batch["attention_mask"] == 1) & (batch["labels"] != -100)
    with torch.no_grad():
        nll = -model.crf.log_likelihood(out.emissions.float(), batch["labels"].clamp(min=0), scored).sum()
        torch.testing.assert_close(out.loss, nll / scored.sum())
        assert torch.equal(out.predictions, model.crf.decode(out.emissions.float(), scored))
    torch.testing.assert_close(out.loss, reference.loss, atol=0.05, rtol=0.02)  # half-precision encoder


@pytest.mark.parametrize("device, dtype", HALF)
def test_the_crf_on_half_precision_emissions_equals_float32(device, dtype):
    """Emissions handed over in half precision (a model run in .half()/.bfloat16()): the likelihood and the Viterbi
    path are those of the same values in float32, so the dynamic programmes do not run in half precision."""
    crf = hf_rnn.crf.LinearChainCRF(5).to(device)
    with torch.no_grad():
        crf.transitions.normal_()
    emissions = (4 * torch.randn(3, 7, 5, device=device)).to(dtype)
    tags = torch.randint(0, 5, (3, 7), device=device)
    mask = torch.arange(7, device=device) < torch.tensor([7, 4, 1], device=device)[:, None]
    likelihood = crf.log_likelihood(emissions, tags, mask)
    assert likelihood.dtype == torch.float32
    torch.testing.assert_close(likelihood, crf.log_likelihood(emissions.float(), tags, mask))
    assert torch.equal(crf.decode(emissions, mask), crf.decode(emissions.float(), mask))


@pytest.mark.parametrize("device", [pytest.param("cpu", marks=pytest.mark.slow), on_cuda("cuda")])
@pytest.mark.parametrize("use_crf", [False, True])
def test_a_compiled_training_step_in_cuda_graphs_matches_eager(device, use_crf):
    """`torch.compile(mode="reduce-overhead")` (CUDA graphs on a GPU; torch's own RNN modules traced with
    `allow_rnn`): three training steps give the eager model's losses and weights. On the CPU (slow: inductor builds
    C++) the same steps run without graphs."""
    torch._dynamo.reset()
    config = tiny_config(bidirectional=True, use_crf=use_crf, hidden_size=16, embedding_size=8, dropout=0.0)
    eager = hf_rnn.RnnForTokenClassification(config).to(device).train()
    compiled = hf_rnn.RnnForTokenClassification(config).to(device).train()
    compiled.load_state_dict(eager.state_dict())
    _, ids, mask = _padded(config.vocab_size, "right", device)
    labels = torch.randint(0, 3, ids.shape, device=device).masked_fill(mask == 0, -100)
    losses: dict[str, list[float]] = {"eager": [], "compiled": []}
    with torch._dynamo.config.patch(allow_rnn=True):
        forward = torch.compile(compiled, mode="reduce-overhead")
        for name, model, run in (("eager", eager, eager), ("compiled", compiled, forward)):
            optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
            for _ in range(3):
                optimizer.zero_grad()
                loss = run(input_ids=ids, attention_mask=mask, labels=labels).loss
                loss.backward()
                optimizer.step()
                losses[name].append(loss.item())  # read before the next replay overwrites a graph's output
    assert len(set(losses["eager"])) == 3  # the steps changed the model
    torch.testing.assert_close(losses["compiled"], losses["eager"], atol=1e-5, rtol=1e-5)
    for (name, ours), reference in zip(compiled.named_parameters(), eager.parameters()):
        torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5, msg=name)
