"""The SSD network and the model artifact it is saved as."""
