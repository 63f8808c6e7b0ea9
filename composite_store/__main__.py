from composite_store.cli import main

raise SystemExit(main())
