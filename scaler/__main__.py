from scaler.cli.main import main

raise SystemExit(main())
