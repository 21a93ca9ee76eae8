"""loihi-sim backend: lowering to cores (mapping, design rules), the bit-accurate simulator, energy."""
