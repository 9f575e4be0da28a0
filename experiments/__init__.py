"""The experiments: one module each, run from the repository root as
`python -m experiments.NAME` (see README.md for the table of commands)."""
