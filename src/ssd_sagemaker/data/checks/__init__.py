"""What valid data is, below every reader: a usable image, a valid sample, the channel report that
counts and names every problem, and the object sizes the network will see."""
