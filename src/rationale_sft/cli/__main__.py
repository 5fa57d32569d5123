"""``python -m rationale_sft.cli``: the same as the ``rationale-sft`` command."""

import sys

from rationale_sft.cli import main

sys.exit(main())
