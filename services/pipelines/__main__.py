"""Run the pipelines service on its own: `python -m services.pipelines [serve options]` (also `claret-pipelines`)."""

import sys

from claret.cli import main as claret


def main() -> None:
    claret(["serve", "--services", "pipelines", *sys.argv[1:]])


if __name__ == "__main__":
    main()
