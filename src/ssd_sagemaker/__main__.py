"""Allow `python -m ssd_sagemaker ...`."""

from ssd_sagemaker.cli import main

raise SystemExit(main())
