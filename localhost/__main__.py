"""`python -m localhost`: the run command (see localhost/run.py)."""

from localhost.run import main

raise SystemExit(main())
