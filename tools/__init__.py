"""Operational scripts: the GPU check (`python tools/gpu_check.py`) and the
throwaway PostgreSQL server of the tests and the scale-out measurement."""
