"""Play SageMaker's part in Pipe mode: for each FILE in turn create the FIFO
`DIRECTORY/CHANNEL_<n>`, wait for a reader, write the file's bytes, close; the next FIFO
appears only once the previous pass is done. A reader closing early is fine (BrokenPipe).

usage: python pipe_writer.py DIRECTORY CHANNEL FILE [FILE ...] [--delay SECONDS]
"""

import os
import sys
import time


def main(argv: list[str]) -> None:
    delay = 0.0
    if "--delay" in argv:
        at = argv.index("--delay")
        delay = float(argv[at + 1])
        del argv[at:at + 2]
    directory, channel, *files = argv
    time.sleep(delay)
    for number, name in enumerate(files):
        path = os.path.join(directory, f"{channel}_{number}")
        os.mkfifo(path)
        with open(name, "rb") as source:
            data = source.read()
        try:
            with open(path, "wb") as fifo:
                fifo.write(data)
        except BrokenPipeError:
            pass


if __name__ == "__main__":
    main(sys.argv[1:])
