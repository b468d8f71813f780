"""``python -m perf run --profile full|short --adapter reference --out reports/out/perf``."""

from perf.cli import main

raise SystemExit(main())
