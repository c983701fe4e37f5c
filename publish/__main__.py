from stages.common.errors import run_cli

from .hub import main

run_cli(main)
