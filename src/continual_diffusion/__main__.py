from continual_diffusion.cli import main

raise SystemExit(main())
