"""Subcommands of the `authbench` command line."""
