"""Protocol codecs and clients, one package per protocol."""
