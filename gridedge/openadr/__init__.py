"""OpenADR 2.0b: the VEN's event rules (pure) and the demo/test VTN."""
