"""Run the payloads service on its own: `python -m services.payloads [serve options]` (also `claret-payloads`)."""

import sys

from claret.cli import main as claret


def main() -> None:
    claret(["serve", "--services", "payloads", *sys.argv[1:]])


if __name__ == "__main__":
    main()
