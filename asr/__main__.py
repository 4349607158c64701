"""`python -m asr` is the same as the `asr` command."""

from asr.cli import main

raise SystemExit(main())
