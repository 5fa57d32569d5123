"""Probes of what a trained model knows at the answer slot: a linear probe on its final hidden state
(``answer_state``) and on every layer across training (``layers``)."""
