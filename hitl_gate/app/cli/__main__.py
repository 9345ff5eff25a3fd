"""`python -m hitl_gate.app.cli`: the `hitl` command, for environments without the script."""

import sys

from hitl_gate.app.cli import main

main(sys.argv[1:])
