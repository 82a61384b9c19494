"""The soak (issue 16): generator (`plan`), fault injector (`faults`), driver (`run`), an
independent model of contract §1 and §3 (`model`) and the checker (`check`). See bench/README.md."""
