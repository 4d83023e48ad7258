"""The channel formats (RecordIO, image + JSON, augmented manifest) behind one protocol
(`protocol.py`): each reads a File-mode channel or parses a Pipe-mode stream into `Sample`s."""
