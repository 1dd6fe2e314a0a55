"""The CPU benchmark: ``python benchmarks/cpu.py [dwc bench options]`` is ``dwc bench``."""

from dwc_compiler.cli.bench import command

if __name__ == "__main__":
    command()  # pylint: disable=no-value-for-parameter
