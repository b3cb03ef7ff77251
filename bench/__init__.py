"""Benchmarks (not tests): `make bench` runs `python -m bench`, which runs every module here."""
