"""torchrun with its stores on loopback: ``python -m gpuviz.run.torchrun ARGS`` is
``torchrun ARGS`` after :func:`gpuviz.run.loopback.install` (what :func:`gpuviz.launch`
runs for a job on one node). Nothing imports this module; it is only run.
"""

from gpuviz.run.loopback import install

if __name__ == "__main__":
    install()
    from torch.distributed.run import main

    main()
