"""`python -m kdl` is the `kdl` command."""

from kdl.cli import main

raise SystemExit(main())
