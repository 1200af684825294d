"""Help text that costs an import only when it is shown."""
from __future__ import annotations

import argparse


def lazy_epilog(parser: argparse.ArgumentParser, make) -> None:
    """Build an epilog only when that command's --help is shown (it imports torch)."""
    plain = parser.format_help

    def format_help():
        if parser.epilog is None:
            parser.epilog = make()
        return plain()

    parser.format_help = format_help
