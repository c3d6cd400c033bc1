"""Run the Models service on its own: `python -m services.models [serve options]`."""

import sys

from claret.cli import main as claret


def main() -> None:
    claret(["serve", "--services", "models", *sys.argv[1:]])


if __name__ == "__main__":
    main()
