from dashboard import asyncmode

asyncmode.patch()  # before kafka-python is imported, or its selector blocks every green thread

from dashboard.cli import main  # noqa: E402

raise SystemExit(main())
