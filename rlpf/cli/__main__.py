"""``python -m rlpf.cli``: the same as the ``rlpf`` command."""
import sys

from rlpf.cli import main

sys.exit(main())
