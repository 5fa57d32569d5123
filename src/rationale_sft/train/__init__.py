"""Supervised fine-tuning: one training loop; arms differ only in the target renderer and the loss mask."""
