from reengage.cli import main

main()
