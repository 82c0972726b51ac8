"""`python -m services.writer`: run the writer with settings from the environment."""

from services.writer.service import main

if __name__ == "__main__":
    main()
