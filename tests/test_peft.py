"""PEFT's LoRA on hf_rnn models: the recipe the README gives (recurrent weights by parameter name, the CRF saved)."""

import pytest
import torch
from conftest import tiny_config

import hf_rnn

peft = pytest.importorskip("peft")

BIO = dict(id2label={0: "O", 1: "B-X", 2: "I-X"}, label2id={"O": 0, "B-X": 1, "I-X": 2})
RECURRENT = ["weight_ih_l0", "weight_hh_l0"]  # nn.LSTM is no LoRA target module; its weight matrices are


def lora_train(model, task_type, modules_to_save, batch: dict, steps: int = 5):
    config = peft.LoraConfig(
        task_type=task_type, r=2, target_modules=[], target_parameters=RECURRENT, modules_to_save=modules_to_save
    )
    tuned = peft.get_peft_model(model, config)
    optimizer = torch.optim.Adam([p for p in tuned.parameters() if p.requires_grad], lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        tuned(**batch).loss.backward()
        optimizer.step()
    return tuned.eval()


def test_lora_on_a_crf_tagger_trains_the_adapters_the_classifier_and_the_crf_only(tmp_path):
    torch.manual_seed(0)
    model = hf_rnn.RnnForTokenClassification(
        tiny_config(bidirectional=True, use_crf=True, crf_constraints="BIO", **BIO)
    )
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    batch = {"input_ids": torch.randint(1, 37, (4, 6)), "labels": torch.tensor([[0, 1, 2, 0, 1, 2]] * 4)}
    tuned = lora_train(model, peft.TaskType.TOKEN_CLS, ["crf"], batch)
    trainable = {name for name, param in tuned.named_parameters() if param.requires_grad}
    assert any("lora_A" in name for name in trainable) and any(".crf." in name for name in trainable)
    with torch.no_grad():
        expected = tuned(input_ids=batch["input_ids"]).predictions
        merged = tuned.merge_and_unload()
        assert torch.equal(merged(input_ids=batch["input_ids"]).predictions, expected)
    changed = {name for name, param in merged.named_parameters() if not torch.equal(param, before[name])}
    # without modules_to_save=["crf"] the transitions would stay frozen at their initial values
    assert {"crf.transitions", "classifier.weight", "model.layers.0.directions.0.weight_hh_l0"} <= changed
    assert "model.embeddings.weight" not in changed
    merged.save_pretrained(tmp_path)
    reloaded = hf_rnn.RnnForTokenClassification.from_pretrained(tmp_path).eval()
    assert torch.equal(reloaded(input_ids=batch["input_ids"]).predictions, expected)


@pytest.mark.parametrize("cell_type", ["lstm", "mingru"])  # the min cells name their projection weight_ih_l0 too
def test_lora_on_a_language_model_keeps_generate_working(cell_type):
    torch.manual_seed(0)
    model = hf_rnn.RnnForCausalLM(tiny_config(cell_type=cell_type))
    before = model.model.layers[0].directions[0].weight_ih_l0.detach().clone()
    ids = torch.randint(1, 37, (2, 8))
    tuned = lora_train(model, peft.TaskType.CAUSAL_LM, None, {"input_ids": ids, "labels": ids})
    with torch.no_grad():
        generated = tuned.generate(input_ids=ids[:, :3], max_new_tokens=4, do_sample=False)
        merged = tuned.merge_and_unload()
        assert torch.equal(merged.generate(input_ids=ids[:, :3], max_new_tokens=4, do_sample=False), generated)
    assert not torch.equal(merged.model.layers[0].directions[0].weight_ih_l0, before)  # the adapter was trained
