"""`python -m stages.report`: see stages/report/__init__.py."""

from stages.common.errors import run_cli
from stages.report import main

run_cli(main)
