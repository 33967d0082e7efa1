"""Training helpers around transformers' `Trainer`: truncated BPTT for language models (`tbptt`) and ULMFiT's
fine-tuning schedules (`finetuning`). Not shipped with checkpoints."""
