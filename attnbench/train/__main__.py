"""``python -m attnbench.train ...`` is ``attnbench train ...`` (e.g. under ``torchrun -m attnbench.train``)."""
from attnbench.cli.train import train

if __name__ == "__main__":
    train(prog_name="attnbench train")
