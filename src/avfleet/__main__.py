from avfleet.cli import main

raise SystemExit(main())
