from retab_mcp.cli import main

raise SystemExit(main())
