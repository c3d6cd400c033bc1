"""Run the jobs service on its own: `python -m services.jobs [serve options]` (also `claret-jobs`)."""

import sys

from claret.cli import main as claret


def main() -> None:
    claret(["serve", "--services", "jobs", *sys.argv[1:]])


if __name__ == "__main__":
    main()
