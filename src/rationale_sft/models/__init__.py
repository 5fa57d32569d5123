"""Language models: BPE tokenizers, tiny model families, pretraining, real checkpoints and LoRA."""
