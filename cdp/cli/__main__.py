from cdp.cli import main

main()
