"""`python -m lab_controller.cli` = `labctl`."""

from lab_controller.cli import main

main()
