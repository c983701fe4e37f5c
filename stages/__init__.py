"""Pipeline stages; each module is runnable as `python -m stages.<name>`."""
