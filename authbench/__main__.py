"""`python -m authbench` is the `authbench` command."""

from authbench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
