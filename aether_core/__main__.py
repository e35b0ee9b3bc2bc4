from aether_core.cli import main

main()
