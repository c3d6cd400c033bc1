from claret.cli import main

main()
