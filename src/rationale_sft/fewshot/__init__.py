"""The few-shot arm: an untrained base model scored with k in-context demonstrations."""
