"""Serve the RAPHAEL demo: ``python app.py --help`` lists the flags (each also an environment variable).

Importing this file starts nothing. The work happens in :mod:`app.server`, whose ``build_demo``
and ``launch`` are re-exported here for scripts and tests.
"""

from model.offline import apply_offline_defaults

apply_offline_defaults()  # before gradio, diffusers and transformers are imported

from app.server import build_demo, launch, main  # noqa: E402

__all__ = ["build_demo", "launch", "main"]

if __name__ == "__main__":
    main()
