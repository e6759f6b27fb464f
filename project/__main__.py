from project.commands.cli import main

if __name__ == "__main__":  # not when a child process of compare imports this module again
    main()
