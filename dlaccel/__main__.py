"""``python -m dlaccel``: the same as the ``dlaccel`` console script."""

from .cli import main

if __name__ == "__main__":
    main()
