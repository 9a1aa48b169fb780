from pathtrace.cli import main

raise SystemExit(main())
