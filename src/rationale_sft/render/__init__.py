"""Serialization of a subject's history before the prediction time into a versioned, hashed prompt."""
