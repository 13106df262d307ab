"""``python -m attnbench`` is the ``attnbench`` command."""
from attnbench.cli import main

if __name__ == "__main__":
    main(prog_name="attnbench")
