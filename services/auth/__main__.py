from services.auth.cli import main

raise SystemExit(main())
