"""Entry point for ``python -m wryte_pipeline``."""

from wryte_pipeline.cli import run

if __name__ == "__main__":
    run()
