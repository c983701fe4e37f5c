"""python -m stages.synthesize --chunks data/chunks --out data/qa --metrics metrics/dataset.json"""

from stages.common.errors import run_cli
from stages.synthesize.cli import main

run_cli(main)
