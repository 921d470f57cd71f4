from claude_bottle.cli import main

raise SystemExit(main())
