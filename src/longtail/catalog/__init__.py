"""Every registered component: importing them all, checking a config against them, and the torch-free index `longtail list` reads."""
