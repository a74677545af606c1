from hrm_tui.cli import main

main()
