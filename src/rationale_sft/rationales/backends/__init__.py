"""Generation backends for teacher rationales (OpenAI-compatible endpoints, local transformers models)."""
